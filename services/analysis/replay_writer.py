"""`admuse replay --to kafka`: a log file written to admuse.decisions and admuse.events.

Decisions carry the pseudonym of the user id under the shared secret, so the events that
ingestion pseudonymizes join them; a replay is idempotent (ids derived from the file)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
from aiokafka.partitioner import DefaultPartitioner

from services.analysis.dataset import LoggedData
from services.common.codec import SchemaRegistry
from services.common.kafka import make_producer
from services.common.settings import KafkaSettings
from services.common.topics import Topics
from services.common.watermark import END_OF_TIME, REPLAY_POLICY, WatermarkCodec, clock_of

_REPLAY_NS = uuid.UUID("6f1c2a52-93a4-4c55-9a5e-0d7c2b0e8a11")


@dataclass(frozen=True)
class ReplayWrite:
    decisions: int
    events: int


async def write_replay(
    kafka: KafkaSettings,
    registry: SchemaRegistry,
    data: LoggedData,
    *,
    campaign_id: str,
    source: str,
    pseudonym_secret: bytes,
    attribution_window_ms: int,
) -> ReplayWrite:
    """Write each logged row as a Decision (admuse.decisions) and its events (admuse.events.raw).

    Every row gives an impression event; a reward > 0 adds a click, and a reward other than 0/1
    adds a conversion with `value` = reward. Ids are derived from campaign, source and row
    number, so replaying the same file twice writes the same ids (downstream de-duplicates).
    Decisions carry no user identity (as inference writes them: erasure needs none in the
    30-day decision log); the events carry the raw user id, which ingestion pseudonymizes.
    """
    topics = Topics.from_settings(kafka)
    codec = registry.codec("Decision")
    binary = data.is_binary()
    rows = data.extra.get("row", np.arange(1, data.n + 1))
    users = data.extra.get("user")
    ctx_cols = {k.split(".", 1)[1]: v for k, v in data.extra.items() if k.startswith("context.")}
    producer = make_producer(kafka)
    await producer.start()
    n_events = 0
    try:
        out = _Batches(producer)
        for i in range(data.n):
            row = int(rows[i])
            decision_id = str(uuid.uuid5(_REPLAY_NS, f"{campaign_id}|{source}|{row}"))
            user = str(users[i]) if users is not None and users[i] else f"replay:{source}:{row}"
            ts = int(data.timestamp_ms[i]) or int(time.time() * 1000)
            context = {k: str(v[i]) for k, v in ctx_cols.items()}
            arm = data.arms[data.arm[i]]
            creative = data.actions[data.action[i]]
            decision = {
                "decision_id": decision_id,
                "decided_at": ts,
                "campaign_id": campaign_id,
                "segment": data.contexts[data.context[i]],
                "context": context,
                "user_id": "",
                "creative_id": creative,
                "propensity": float(data.propensity[i]),
                "arm": arm if arm in ("optimized", "catalog", "control") else "optimized",
                "policy": REPLAY_POLICY,
                "policy_version": source,
                "model_version": None,
                "attribution_window_ms": attribution_window_ms,
                "candidates": 0,
            }
            await out.add(topics.decisions.name, decision_id.encode(), codec.encode(decision))
            reward = float(data.reward[i])
            kinds = [("impression", None)]
            if reward > 0:
                kinds.append(("click", None))
                if not binary:
                    kinds.append(("conversion", reward))
            for j, (kind, value) in enumerate(kinds):
                event = {
                    "event_id": f"{decision_id}:{kind}",
                    "type": kind,
                    "occurred_at": ts + j,
                    "campaign_id": campaign_id,
                    "creative_id": creative,
                    "decision_id": decision_id,
                    "user_id": user,
                    "consent": {"personalization": True},
                    "context": context,
                    "value": value,
                    "source": f"admuse-replay:{source}",
                }
                await out.add(topics.events_raw.name, user.encode(), json.dumps(event).encode())
                n_events += 1
        await out.flush()
        # decisions first: features may then close their windows as soon as the events end
        await _end_of_source(producer, registry, topics.decisions.name, source)
        await _end_of_source(producer, registry, topics.events_raw.name, source)
    finally:
        await producer.stop()
    return ReplayWrite(data.n, n_events)


async def _end_of_source(
    producer: Any, registry: SchemaRegistry, raw_topic: str, source: str
) -> None:
    """The replay is a source with a clock of its own (its decisions carry policy "replay"
    and policy_version `source`): once everything it had is written, say so in every
    partition of `raw_topic` (admuse.events.raw, admuse.decisions), after its records.
    Ingestion carries the raw one to features in order with the events, and features closes
    the replayed windows by it — in the log's time, not the wall clock; the decisions one
    says the replayed decisions are complete (features holds their events until then)."""
    codec = WatermarkCodec(registry)
    clock = clock_of(REPLAY_POLICY, source)
    now = int(time.time() * 1000)
    value = codec.encode(f"admuse-replay:{source}", 1, {0: END_OF_TIME}, now, source=clock)
    sent = [
        await producer.send(raw_topic, value, key=clock.encode(), partition=p)
        for p in sorted(await producer.partitions_for(raw_topic))
    ]
    await asyncio.gather(*sent)


class _Batches:
    """Records appended straight into per-partition batches (`create_batch`/`send_batch`):
    one future per batch instead of one per record. Partitions come from the same default
    partitioner (murmur2 of the key) that `send` uses, so keys land where they always do."""

    def __init__(self, producer: Any) -> None:
        self._producer = producer
        self._partitioner = DefaultPartitioner()
        self._partitions: dict[str, list[int]] = {}
        self._open: dict[tuple[str, int], Any] = {}
        self._sent: list[asyncio.Future[Any]] = []

    async def add(self, topic: str, key: bytes, value: bytes) -> None:
        parts = self._partitions.get(topic)
        if parts is None:
            parts = self._partitions[topic] = sorted(await self._producer.partitions_for(topic))
        slot = (topic, self._partitioner(key, parts, parts))
        batch = self._open.get(slot)
        if batch is None:
            batch = self._open[slot] = self._producer.create_batch()
        if batch.append(key=key, value=value, timestamp=None) is None:  # full: ship it
            await self._ship(slot)
            batch = self._open[slot] = self._producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:
                raise ValueError(f"a record of {len(value)} bytes does not fit in a batch")
        if len(self._sent) >= 64:
            await asyncio.gather(*self._sent)
            self._sent.clear()

    async def flush(self) -> None:
        for slot in list(self._open):
            await self._ship(slot)
        await asyncio.gather(*self._sent)
        self._sent.clear()

    async def _ship(self, slot: tuple[str, int]) -> None:
        batch = self._open.pop(slot)
        batch.close()
        self._sent.append(await self._producer.send_batch(batch, slot[0], partition=slot[1]))
