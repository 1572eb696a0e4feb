"""Read decisions and rewards from Kafka for a report, and write replayed logs back.

Reads never join a consumer group and never commit: they assign partitions, seek to a time
(`offsets_for_times`) or to given offsets, and read up to the end offsets seen at the start, so
a report is a snapshot and can be rerun any time. A decision's record is produced at or after
its `decided_at`, so seeking to `from` never skips a decision in range; records are then
filtered on the payload's `decided_at`. Records that do not decode are counted, not fatal.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from aiokafka import TopicPartition

from services.analysis.dataset import LoggedData
from services.analysis.replay_writer import ReplayWrite, write_replay
from services.common.codec import CodecError, SchemaRegistry
from services.common.kafka import make_consumer, partitions_of, read_to_end
from services.common.settings import KafkaSettings
from services.common.topics import Topics
from services.common.watermark import WatermarkCodec

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
        tps = await partitions_of(kafka, [topic], timeout_s=0)
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

        def take(msg: Any) -> None:
            if control.is_watermark(msg.value):
                return  # time, not data (docs/contracts.md, Watermarks)
            stats.records += 1
            try:
                value = decode(msg.value)
            except CodecError:
                stats.undecodable += 1
                return
            if keep(value):
                stats.kept += 1
                out.append(value)

        try:
            await read_to_end(consumer, stop, take, timeout_s=timeout_s, max_records=5000)
        except TimeoutError:
            raise TimeoutError(
                f"reading {topic} did not reach the end offsets in {timeout_s:.0f}s"
            ) from None
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
