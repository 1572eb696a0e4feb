"""Read decisions and rewards from Kafka for a report, and write replayed logs back.

Reads never join a consumer group and never commit: they assign partitions, seek to a time
(`offsets_for_times`) or to given offsets, and read up to the end offsets seen at the start, so
a report is a snapshot and can be rerun any time. A decision's record is produced at or after
its `decided_at`, so seeking to `from` never skips a decision in range; records are then
filtered on the payload's `decided_at`. Records that do not decode are counted, not fatal.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from aiokafka import TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from services.analysis.dataset import LoggedData
from services.common.codec import CodecError, SchemaRegistry
from services.common.kafka import make_admin, make_consumer, make_producer
from services.common.settings import KafkaSettings
from services.common.topics import Topics
from services.common.watermark import END_OF_TIME, REPLAY_POLICY, WatermarkCodec, clock_of

__all__ = [
    "ALL_PARTITIONS",
    "CampaignLogs",
    "ReadStats",
    "ReadWindow",
    "ReplayWrite",
    "decisions_summary",
    "load_campaign",
    "parse_offsets",
    "parse_time",
    "read_bandit_state",
    "read_latest",
    "read_topic",
    "rewards_to_data",
    "write_replay",
]

ALL_PARTITIONS = -1
_REPLAY_NS = uuid.UUID("6f1c2a52-93a4-4c55-9a5e-0d7c2b0e8a11")


@dataclass(frozen=True)
class ReadWindow:
    """What to read: decisions with `from_ms <= decided_at < to_ms`, and/or offset ranges.

    offsets: {partition: (start, end_exclusive or None)}; partition -1 applies to all.
    """

    from_ms: int | None = None
    to_ms: int | None = None
    offsets: Mapping[int, tuple[int, int | None]] | None = None

    def keeps(self, decided_at_ms: int) -> bool:
        return (self.from_ms is None or decided_at_ms >= self.from_ms) and (
            self.to_ms is None or decided_at_ms < self.to_ms
        )


@dataclass
class ReadStats:
    records: int = 0
    kept: int = 0
    undecodable: int = 0


def parse_offsets(spec: str) -> dict[int, tuple[int, int | None]]:
    """`START[-END]` for every partition, or `P:START[-END],P:START[-END]` (END exclusive)."""
    out: dict[int, tuple[int, int | None]] = {}
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        partition, _, rng = part.rpartition(":")
        start, _, end = rng.partition("-")
        try:
            p = int(partition) if partition else ALL_PARTITIONS
            out[p] = (int(start), int(end) if end else None)
        except ValueError:
            raise ValueError(
                f"offsets {spec!r}: expected START[-END] or P:START[-END],… (integers)"
            ) from None
    return out


def parse_time(text: str, now_ms: int | None = None) -> int:
    """Epoch ms from ISO-8601 (naive = UTC), epoch ms digits, or a relative `-2h`/`-30m`/`-7d`."""
    text = text.strip()
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text.startswith("-") and text[-1:] in units:
        try:
            return now_ms - int(float(text[1:-1]) * units[text[-1]] * 1000)
        except ValueError:
            pass
    if text.isdigit():
        return int(text)
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"time {text!r}: use ISO-8601 (2026-11-27T10:00:00Z), epoch ms, or -2h / -30m / -7d"
        ) from None
    return int((dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp() * 1000)


async def read_topic(
    kafka: KafkaSettings,
    topic: str,
    decode: Callable[[bytes], dict[str, Any]],
    window: ReadWindow,
    *,
    keep: Callable[[dict[str, Any]], bool] = lambda _r: True,
    timeout_s: float = 120.0,
) -> tuple[list[dict[str, Any]], ReadStats]:
    """Decoded records of `topic` inside the window, up to the end offsets seen at the start."""
    consumer = make_consumer(kafka, group_id=None, enable_auto_commit=False)
    await consumer.start()
    control = WatermarkCodec(SchemaRegistry.load())
    stats = ReadStats()
    out: list[dict[str, Any]] = []
    try:
        partitions = await _partitions(kafka, topic)
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        stop = await consumer.end_offsets(tps)
        starts: dict[TopicPartition, int] = {}
        if window.offsets:
            for tp in tps:
                rng = window.offsets.get(tp.partition, window.offsets.get(ALL_PARTITIONS))
                if rng is None:
                    stop[tp] = 0
                    continue
                starts[tp] = rng[0]
                if rng[1] is not None:
                    stop[tp] = min(stop[tp], rng[1])
        elif window.from_ms is not None:
            found = await consumer.offsets_for_times(
                {tp: max(window.from_ms - 300_000, 0) for tp in tps}
            )
            starts = {tp: (ot.offset if ot is not None else stop[tp]) for tp, ot in found.items()}
        else:
            starts = dict(await consumer.beginning_offsets(tps))
        for tp in tps:
            consumer.seek(tp, starts.get(tp, stop[tp]))
        pending = {tp for tp in tps if starts.get(tp, stop[tp]) < stop[tp]}
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"reading {topic} did not reach the end offsets in {timeout_s:.0f}s"
                )
            batch = await consumer.getmany(*pending, timeout_ms=500, max_records=5000)
            for tp, messages in batch.items():
                for msg in messages:
                    if msg.offset >= stop[tp]:
                        break
                    if control.is_watermark(msg.value):
                        continue  # time, not data (docs/contracts.md, Watermarks)
                    stats.records += 1
                    try:
                        value = decode(msg.value)
                    except CodecError:
                        stats.undecodable += 1
                        continue
                    if keep(value):
                        stats.kept += 1
                        out.append(value)
            for tp in list(pending):
                if await consumer.position(tp) >= stop[tp]:
                    pending.discard(tp)
    finally:
        await consumer.stop()
    return out, stats


async def read_latest(
    kafka: KafkaSettings,
    topic: str,
    decode: Callable[[bytes], dict[str, Any]],
    key: Callable[[dict[str, Any]], str],
    keep: Callable[[dict[str, Any]], bool] = lambda _r: True,
) -> dict[str, dict[str, Any]]:
    """Latest value per key of a compacted topic (campaigns, creatives, stats)."""
    records, _ = await read_topic(kafka, topic, decode, ReadWindow(), keep=keep)
    return {key(r): r for r in records}


async def _partitions(kafka: KafkaSettings, topic: str) -> list[int]:
    admin = make_admin(kafka)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    parts = [p["partition"] for t in described if t["topic"] == topic for p in t["partitions"]]
    if not parts:
        raise LookupError(f"topic {topic} does not exist; create it with `admuse topics create`")
    return sorted(parts)


def _ms(value: Any) -> int:
    return int(value.timestamp() * 1000) if hasattr(value, "timestamp") else int(value)


def rewards_to_data(rewards: list[dict[str, Any]]) -> LoggedData:
    """Reward records (deduplicated by decision_id, last wins) as `LoggedData`.

    Context is the record's segment; extra columns: decision_id, rewarded_at_ms, shown.
    """
    latest = {r["decision_id"]: r for r in rewards}
    # in decision order, not in the order partitions happened to arrive: the same records give
    # the same floating-point sums, so two readers (CLI, console) report the same numbers
    rows = sorted(latest.values(), key=lambda r: (_ms(r["decided_at"]), r["decision_id"]))
    return LoggedData.from_columns(
        context=[r["segment"] for r in rows],
        action=[r["creative_id"] for r in rows],
        reward=[r["reward"] for r in rows],
        propensity=[r["propensity"] for r in rows],
        timestamp_ms=[_ms(r["decided_at"]) for r in rows],
        arm=[r["arm"] for r in rows],
        extra={
            "decision_id": np.array([r["decision_id"] for r in rows], dtype=object),
            "rewarded_at_ms": np.array([_ms(r["rewarded_at"]) for r in rows], dtype=np.int64),
            "shown": np.array([bool(r.get("shown", True)) for r in rows], dtype=bool),
        },
    )


def decisions_summary(decisions: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Decision records (deduplicated by decision_id) as columns: arm, decided_at_ms."""
    latest = {d["decision_id"]: d for d in decisions}
    rows = list(latest.values())
    return {
        "arm": np.array([d["arm"] for d in rows], dtype=object),
        "decided_at_ms": np.array([_ms(d["decided_at"]) for d in rows], dtype=np.int64),
    }


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


@dataclass
class CampaignLogs:
    """What a report or an OPE run reads for one campaign."""

    rewards: LoggedData
    decision_arms: np.ndarray | None
    campaign: dict[str, Any] | None
    attributes: dict[str, dict[str, Any]] = field(default_factory=dict)
    stats: dict[str, ReadStats] = field(default_factory=dict)
    pending: int | None = None  # decisions read that have no Reward yet (None: not read)


async def load_campaign(
    kafka: KafkaSettings,
    registry: SchemaRegistry,
    campaign_id: str,
    *,
    decisions: ReadWindow | None,
    rewards: ReadWindow,
    with_catalog: bool = True,
) -> CampaignLogs:
    """Rewards (and decisions, unless `decisions` is None) of one campaign, plus its campaign
    record and creatives' attributes from the compacted topics."""
    topics = Topics.from_settings(kafka)
    reward_codec = registry.codec("Reward")

    def in_window(window: ReadWindow) -> Callable[[dict[str, Any]], bool]:
        return lambda r: r["campaign_id"] == campaign_id and window.keeps(_ms(r["decided_at"]))

    reward_rows, reward_stats = await read_topic(
        kafka, topics.rewards.name, reward_codec.decode, rewards, keep=in_window(rewards)
    )
    stats = {"rewards": reward_stats}
    arms = None
    pending = None
    if decisions is not None:
        decision_rows, stats["decisions"] = await read_topic(
            kafka,
            topics.decisions.name,
            registry.codec("Decision").decode,
            decisions,
            keep=in_window(decisions),
        )
        arms = decisions_summary(decision_rows)["arm"]
        rewarded = {r["decision_id"] for r in reward_rows}
        pending = len({d["decision_id"] for d in decision_rows} - rewarded)
    campaign = None
    attributes: dict[str, dict[str, Any]] = {}
    if with_catalog:
        campaigns = await read_latest(
            kafka,
            topics.campaigns.name,
            registry.codec("Campaign").decode,
            key=lambda r: r["campaign_id"],
            keep=lambda r: r["campaign_id"] == campaign_id,
        )
        campaign = campaigns.get(campaign_id)
        creatives = await read_latest(
            kafka,
            topics.creatives.name,
            registry.codec("Creative").decode,
            key=lambda r: r["creative_id"],
            keep=lambda r: r["campaign_id"] == campaign_id,
        )
        attributes = {cid: dict(c["attributes"]) for cid, c in creatives.items()}
    return CampaignLogs(
        rewards_to_data(reward_rows), arms, campaign, attributes, stats, pending=pending
    )


async def read_bandit_state(
    kafka: KafkaSettings, registry: SchemaRegistry, campaign_id: str
) -> dict[str, dict[str, tuple[float, float]]]:
    """{segment: {creative_id: (alpha, beta)}} from the cumulative records of admuse.stats."""
    topics = Topics.from_settings(kafka)
    latest = await read_latest(
        kafka,
        topics.stats.name,
        registry.codec("CreativeStats").decode,
        key=lambda r: f"{r['segment']}/{r['creative_id']}",
        keep=lambda r: r["campaign_id"] == campaign_id and r.get("window_start") is None,
    )
    state: dict[str, dict[str, tuple[float, float]]] = {}
    for r in latest.values():
        state.setdefault(r["segment"], {})[r["creative_id"]] = (float(r["alpha"]), float(r["beta"]))
    return state
