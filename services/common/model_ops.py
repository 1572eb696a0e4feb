"""Model versions of a campaign, and pinning or rolling back the one that serves: the one
write path of `admuse models list|pin|rollback` and the console.

Versions are read from the model store (one folder per version with its signed artifacts);
the serving one is the newest record for the campaign on admuse.models. `pin_model`
publishes the ModelPublished record of a stored version again, so inference swaps it in
(verifying its signature and quality verdict as for any publication); `rollback_model` pins
the newest stored version older than the one serving. Either holds until the trainer
publishes a newer model (which is then watched by the automatic rollback).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "ModelOpError",
    "ModelVersion",
    "model_record",
    "model_versions",
    "pin_model",
    "rollback_model",
    "serving_version",
    "stored_versions",
]

_FILES = {
    "generator": "generator.onnx",
    "reward_model": "reward_model.onnx",
    "metadata": "metadata.json",
    "signature": "signature.json",
}


class ModelOpError(ValueError):
    """A pin or rollback that cannot be done; the message says why."""


@dataclass(frozen=True)
class ModelVersion:
    """One stored version: its quality verdict, held-out AUC, rows, and whether it serves."""

    version: str
    quality_passed: bool
    reward_auc: float
    training_rows: int | None
    serving: bool


def stored_versions(store: Any, campaign: str) -> list[str]:
    """Stored versions with a signature, oldest first (versions start with their UTC time)."""
    return [
        v for v in store.list_dir(campaign) if "signature.json" in store.list_dir(f"{campaign}/{v}")
    ]


def model_record(store: Any, campaign: str, version: str) -> dict[str, Any]:
    """The ModelPublished record of a stored version, as the trainer published it."""
    from services.common.model_store import sha256_hex

    artifacts = []
    blobs = {}
    for role, name in _FILES.items():
        uri = store.uri_of(f"{campaign}/{version}/{name}")
        blobs[role] = data = store.get(uri)
        artifacts.append({"name": role, "uri": uri, "sha256": sha256_hex(data), "size": len(data)})
    meta = json.loads(blobs["metadata"])
    metrics = {k: float(v) for k, v in meta.get("metrics", {}).items() if _finite(v)}
    return {
        "model_name": campaign,
        "campaign_id": campaign,
        "version": version,
        "artifacts": artifacts,
        "metrics": metrics,
        "training_rows": int(meta.get("training_rows", 0)),
        "seed": int(meta.get("seed", 0)),
        "published_at": datetime.now(UTC),
    }


def _finite(v: object) -> bool:
    return isinstance(v, int | float) and float("-inf") < float(v) < float("inf")


async def serving_version(kafka: Any, campaign: str) -> str | None:
    """The version of the newest admuse.models record for `campaign` (None: none)."""
    from aiokafka import TopicPartition

    from services.common.codec import SchemaRegistry
    from services.common.kafka import make_consumer, wait_for_broker
    from services.common.topics import Topics

    topics = Topics.from_settings(kafka)
    codec = SchemaRegistry.load().codec("ModelPublished")
    await wait_for_broker(kafka, 30)
    consumer = make_consumer(kafka, group_id=None)
    await consumer.start()
    latest = None
    try:
        parts = consumer.partitions_for_topic(topics.models.name) or {0}
        tps = [TopicPartition(topics.models.name, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        pending = {tp for tp in tps if end[tp] > 0}
        while pending:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                for rec in records:
                    if rec.key == campaign.encode() and rec.value is not None:
                        latest = codec.decode(rec.value)["version"]
            pending = {tp for tp in pending if await consumer.position(tp) < end[tp]}
    finally:
        await consumer.stop()
    return latest


async def model_versions(kafka: Any, store: Any, campaign: str) -> list[ModelVersion]:
    """Every stored version of `campaign`, oldest first, with which one serves."""
    serving = await serving_version(kafka, campaign)
    out = []
    for version in stored_versions(store, campaign):
        meta = json.loads(store.get(store.uri_of(f"{campaign}/{version}/metadata.json")))
        rows = meta.get("training_rows")
        out.append(
            ModelVersion(
                version,
                bool((meta.get("quality") or {}).get("passed")),
                float(meta.get("metrics", {}).get("reward_auc", float("nan"))),
                int(rows) if isinstance(rows, int) else None,
                version == serving,
            )
        )
    return out


async def pin_model(kafka: Any, store: Any, campaign: str, version: str) -> dict[str, Any]:
    """Serve a stored version now; its republished record. ModelOpError: no such version."""
    if version not in stored_versions(store, campaign):
        raise ModelOpError(f"{campaign} has no signed version {version!r}")
    record = model_record(store, campaign, version)
    await _publish(kafka, record)
    return record


async def rollback_model(kafka: Any, store: Any, campaign: str) -> tuple[str | None, str]:
    """Serve the newest stored version older than the serving one: (from, to)."""
    serving = await serving_version(kafka, campaign)
    older = [v for v in stored_versions(store, campaign) if serving is None or v < serving]
    if not older:
        raise ModelOpError(f"{campaign}: no stored version before {serving}")
    await _publish(kafka, model_record(store, campaign, older[-1]))
    return serving, older[-1]


async def _publish(kafka: Any, record: dict[str, Any]) -> None:
    from services.common.codec import SchemaRegistry
    from services.common.kafka import make_producer
    from services.common.topics import Topics

    topics = Topics.from_settings(kafka)
    producer = make_producer(kafka)
    await producer.start()
    try:
        codec = SchemaRegistry.load().codec("ModelPublished")
        await producer.send_and_wait(
            topics.models.name, codec.encode(record), key=record["model_name"].encode()
        )
    finally:
        await producer.stop()
