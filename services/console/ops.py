"""Operations: service health (the supervisor's `<run>/services.json`), consumer lag per
group, the watermarks written into admuse.events and admuse.decisions, dead letters per
reason with masked samples, and decisions still waiting for their reward."""

from __future__ import annotations

import json
import re
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition

from services.common.codec import CodecError, SchemaRegistry
from services.common.kafka import make_admin, make_consumer
from services.common.settings import KafkaSettings
from services.common.topics import Topics
from services.common.watermark import PartitionWatermark, WatermarkCodec

__all__ = ["Operations", "mask_identities", "read_operations"]

WATERMARK_TAIL = 400  # records per partition searched backwards for the latest watermark
_MAX_SAMPLE = 400
# Anything that looks like a user identity in a dead letter's kept bytes: the value of a
# user-ish field, and ingestion's `redacted-…` tokens (already not the user, but not shown).
_IDENTITY = re.compile(
    r'("(?:user_id|userId|user|uid|pseudonym|email|device_id)"\s*:\s*)"(?:[^"\\]|\\.)*"', re.I
)
_REDACTED = re.compile(r"redacted-[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class Operations:
    read_at_ms: int
    services: dict[str, dict[str, Any]]
    lag: dict[str, dict[str, int]]  # group -> topic -> lag
    watermarks: dict[str, dict[int, int | None]]  # topic -> partition -> watermark ms
    dead_letters: dict[str, int]
    samples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def mask_identities(text: str) -> str:
    """`"user_id": "…"` → `"user_id": "•••"`; redaction tokens → `redacted-•••`."""
    return _REDACTED.sub("redacted-•••", _IDENTITY.sub(r'\1"•••"', text))


async def read_operations(
    kafka: KafkaSettings, registry: SchemaRegistry, run_dir: Path | None, samples: int
) -> Operations:
    topics = Topics.from_settings(kafka)
    errors: list[str] = []
    services = _services(run_dir, errors)
    lag = await _lag(kafka, topics, errors)
    consumer = make_consumer(kafka, group_id=None)
    await consumer.start()
    try:
        marks = {
            t.name: await _watermarks(consumer, t.name, t.partitions, registry)
            for t in (topics.events, topics.decisions)
        }
        counts, picked = await _dead_letters(consumer, topics, registry, samples)
    finally:
        await consumer.stop()
    return Operations(int(time.time() * 1000), services, lag, marks, counts, picked, errors)


def _services(run_dir: Path | None, errors: list[str]) -> dict[str, dict[str, Any]]:
    if run_dir is None:
        return {}
    path = run_dir / "services.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError) as exc:
        errors.append(f"cannot read {path}: {exc}")
        return {}
    return {str(k): v for k, v in data.items() if isinstance(v, dict)}


async def _lag(
    kafka: KafkaSettings, topics: Topics, errors: list[str]
) -> dict[str, dict[str, int]]:
    ours = {t.name for t in topics}
    admin = make_admin(kafka)
    await admin.start()
    consumer = make_consumer(kafka, group_id=None)
    await consumer.start()
    out: dict[str, dict[str, int]] = {}
    try:
        for group in sorted({g[0] for g in await admin.list_consumer_groups()}):
            try:
                committed = await admin.list_consumer_group_offsets(group)
            except Exception as exc:  # one group's coordinator moving must not hide the rest
                errors.append(f"offsets of group {group}: {exc}")
                continue
            tps = [tp for tp in committed if tp.topic in ours]
            if not tps:
                continue
            end = await consumer.end_offsets(tps)
            per: dict[str, int] = defaultdict(int)
            for tp in tps:
                per[tp.topic] += max(end[tp] - max(committed[tp].offset, 0), 0)
            out[group] = dict(sorted(per.items()))
    finally:
        await consumer.stop()
        await admin.close()
    return out


async def _watermarks(
    consumer: Any, topic: str, partitions: int, registry: SchemaRegistry
) -> dict[int, int | None]:
    control = WatermarkCodec(registry)
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    begin, end = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
    out: dict[int, int | None] = {}
    for tp in tps:
        mark = PartitionWatermark()
        for value in await _tail(consumer, tp, max(begin[tp], end[tp] - WATERMARK_TAIL), end[tp]):
            if control.is_watermark(value):
                try:
                    mark.merge(control.decode(value))
                except CodecError:
                    continue
        out[tp.partition] = mark.value
    return out


async def _tail(consumer: Any, tp: TopicPartition, start: int, stop: int) -> list[bytes]:
    if start >= stop:
        return []
    consumer.assign([tp])
    consumer.seek(tp, start)
    values: list[bytes] = []
    deadline = time.monotonic() + 10
    while start < stop and time.monotonic() < deadline:
        batch = await consumer.getmany(tp, timeout_ms=300, max_records=2000)
        for msg in batch.get(tp, []):
            if msg.offset < stop and msg.value is not None:
                values.append(msg.value)
        if await consumer.position(tp) >= stop:
            break
    return values


async def _dead_letters(
    consumer: Any, topics: Topics, registry: SchemaRegistry, samples: int
) -> tuple[dict[str, int], dict[str, list[dict[str, Any]]]]:
    codec = registry.codec("DeadLetter")
    counts: Counter[str] = Counter()
    picked: dict[str, deque[dict[str, Any]]] = defaultdict(lambda: deque(maxlen=samples or 1))
    for p in range(topics.events_dlq.partitions):
        tp = TopicPartition(topics.events_dlq.name, p)
        begin, end = (
            (await consumer.beginning_offsets([tp]))[tp],
            (await consumer.end_offsets([tp]))[tp],
        )
        for value in await _tail(consumer, tp, begin, end):
            try:
                dl = codec.decode(value)
            except CodecError:
                counts["(undecodable dead letter)"] += 1
                continue
            counts[dl["reason"]] += 1
            original = bytes(dl["original_value"] or b"")[:_MAX_SAMPLE]
            picked[dl["reason"]].append(
                {
                    "source": (
                        f"{dl['source_topic']}[{dl['source_partition']}]@{dl['source_offset']}"
                    ),
                    "service": dl.get("service"),
                    "field": dl.get("field"),
                    "message": mask_identities(str(dl.get("message") or "")),
                    "failed_at": dl.get("failed_at"),
                    "value": mask_identities(original.decode("utf-8", "replace")),
                }
            )
    return dict(counts.most_common()), {k: list(v) if samples else [] for k, v in picked.items()}
