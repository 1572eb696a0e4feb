"""What inference knows, restored from Kafka: campaigns, creatives, stats and models.

`State` is plain dictionaries, changed only by `apply_*` on the event loop (so a request never
sees half an update). `StateFollower` reads admuse.campaigns, admuse.creatives, admuse.stats
and admuse.models from the beginning (assigned partitions, no consumer group), sets
`restored` once it has caught up with the end offsets it saw at start, and follows them live
afterwards. Undecodable records are logged, counted and skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from services.common.codec import CodecError, SchemaRegistry
from services.common.decay import Evidence
from services.common.kafka import make_consumer, partitions_of, positions_reached
from services.common.logging import get_logger
from services.common.settings import KafkaSettings
from services.common.topics import Topics
from services.inference.metrics import Metrics

__all__ = ["SegmentStats", "State", "StateFollower"]

_log = get_logger(__name__)

ModelHandler = Callable[[dict[str, Any]], Awaitable[None] | None]


@dataclass(frozen=True, slots=True)
class SegmentStats:
    """Cumulative stats of one campaign × segment × creative from admuse.stats."""

    impressions: int
    reward_sum: float
    alpha: float
    beta: float
    updated_at_ms: int
    # Decayed evidence (prior excluded) as of updated_at_ms, and the half-life features used.
    # Records older than CreativeStats v2 carry none: evidence is then the plain counts.
    successes: float | None = None
    failures: float | None = None
    half_life_s: float | None = None

    def evidence(self, now_ms: int) -> Evidence:
        """The Beta evidence read at `now_ms`: each observation weighted by its age."""
        if self.successes is None or self.failures is None:
            n = float(max(self.impressions, 0))
            s = min(max(self.reward_sum, 0.0), n)
            return Evidence(s, n - s, self.updated_at_ms)
        ev = Evidence(self.successes, self.failures, self.updated_at_ms)
        return ev.at(now_ms, self.half_life_s)


@dataclass
class State:
    """The service's view of the world. Versions let caches know when to refresh."""

    campaigns: dict[str, dict[str, Any]] = field(default_factory=dict)
    creatives: dict[str, dict[str, Any]] = field(default_factory=dict)
    live: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    stats: dict[str, dict[tuple[str, str], SegmentStats]] = field(default_factory=dict)
    published: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The last few publications per campaign, oldest first: fallbacks when the newest is refused.
    history: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # Bumped when the set of arms of a campaign may change (campaign, creatives, model) ...
    structure_version: dict[str, int] = field(default_factory=dict)
    # ... and when only its posteriors moved.
    stats_version: dict[str, int] = field(default_factory=dict)

    def apply_campaign(self, key: str, record: dict[str, Any] | None) -> None:
        if record is None:
            self.campaigns.pop(key, None)
        else:
            key = record["campaign_id"]
            self.campaigns[key] = record
        self._bump(self.structure_version, key)

    def apply_creative(self, key: str, record: dict[str, Any] | None) -> None:
        old = self.creatives.pop(key, None)
        if old is not None:
            self.live.get(old["campaign_id"], {}).pop(key, None)
            self._bump(self.structure_version, old["campaign_id"])
        if record is None:
            return
        cid = record["creative_id"]
        self.creatives[cid] = record
        if record["status"] == "live":
            self.live.setdefault(record["campaign_id"], {})[cid] = record
        self._bump(self.structure_version, record["campaign_id"])

    def apply_stats(self, key: str, record: dict[str, Any] | None) -> None:
        if record is None:
            if "@" in key:
                return
            parts = key.split("/")
            if len(parts) != 3:
                return
            campaign, segment, creative = parts
            self.stats.get(campaign, {}).pop((segment, creative), None)
            self._bump(self.stats_version, campaign)
            return
        if record.get("window_start") is not None:
            return  # tumbling windows are for reports; the bandit uses cumulative stats
        campaign = record["campaign_id"]
        updated = record["updated_at"]
        self.stats.setdefault(campaign, {})[(record["segment"], record["creative_id"])] = (
            SegmentStats(
                int(record["impressions"]),
                float(record["reward_sum"]),
                float(record["alpha"]),
                float(record["beta"]),
                int(updated.timestamp() * 1000) if hasattr(updated, "timestamp") else int(updated),
                record.get("successes"),
                record.get("failures"),
                record.get("decay_half_life_s"),
            )
        )
        self._bump(self.stats_version, campaign)

    def live_creatives(self, campaign_id: str, segment: str | None = None) -> list[dict[str, Any]]:
        """Live creatives that may serve `segment` (all live ones when segment is None)."""
        live = self.live.get(campaign_id, {}).values()
        if segment is None:
            return sorted(live, key=_creative_order)
        return sorted((c for c in live if c.get("segment") in (None, segment)), key=_creative_order)

    def segment_stats(
        self, campaign_id: str, segment: str, creative_id: str
    ) -> SegmentStats | None:
        return self.stats.get(campaign_id, {}).get((segment, creative_id))

    def bump_structure(self, campaign_id: str) -> None:
        self._bump(self.structure_version, campaign_id)

    @staticmethod
    def _bump(versions: dict[str, int], key: str) -> None:
        versions[key] = versions.get(key, 0) + 1


def _creative_order(c: dict[str, Any]) -> tuple[int, str]:
    return (0 if c["origin"] == "catalog" else 1, c["creative_id"])


class StateFollower:
    """Reads the four state topics into `State`; `restored` is set when caught up."""

    def __init__(
        self,
        kafka: KafkaSettings,
        registry: SchemaRegistry,
        state: State,
        metrics: Metrics,
        on_model: ModelHandler,
    ) -> None:
        topics = Topics.from_settings(kafka)
        self._kafka = kafka
        self._state = state
        self._metrics = metrics
        self._on_model = on_model
        self._handlers = {
            topics.campaigns.name: (registry.codec("Campaign"), state.apply_campaign),
            topics.creatives.name: (registry.codec("Creative"), state.apply_creative),
            topics.stats.name: (registry.codec("CreativeStats"), state.apply_stats),
            topics.models.name: (registry.codec("ModelPublished"), self._apply_model),
        }
        self.restored = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        try:
            partitions = await partitions_of(self._kafka, self._handlers, timeout_s=0)
        except LookupError as exc:
            raise RuntimeError(f"state topics missing: {exc}") from None
        consumer = make_consumer(self._kafka, group_id=None, isolation_level="read_committed")
        await consumer.start()
        self._consumer = consumer
        try:
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            targets = await consumer.end_offsets(partitions)
        except BaseException:
            await consumer.stop()
            raise
        _log.info("restoring_state", partitions=len(partitions), records=sum(targets.values()))
        self._task = asyncio.create_task(self._run(consumer, targets), name="state-follower")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    async def _run(self, consumer: AIOKafkaConsumer, targets: dict[TopicPartition, int]) -> None:
        pending = {tp: end for tp, end in targets.items() if end > 0}
        if not pending:
            self._mark_restored()
        while True:
            try:
                batches = await consumer.getmany(timeout_ms=500, max_records=2000)
            except KafkaError as exc:
                _log.warning("state_topics_unreachable", detail="retrying", error=repr(exc))
                await asyncio.sleep(1.0)
                continue
            for tp, records in batches.items():
                for rec in records:
                    await self._apply(tp.topic, rec.key, rec.value, rec.offset)
            if pending and await positions_reached(consumer, pending):
                pending = {}
                self._mark_restored()

    def _mark_restored(self) -> None:
        s = self._state
        _log.info(
            "state_restored",
            campaigns=len(s.campaigns),
            creatives=len(s.creatives),
            stats=sum(len(v) for v in s.stats.values()),
            models=len(s.published),
        )
        self.restored.set()

    async def _apply(self, topic: str, key: bytes | None, value: bytes | None, offset: int) -> None:
        codec, handler = self._handlers[topic]
        key_s = key.decode("utf-8", "replace") if key is not None else ""
        try:
            record = None if value is None else codec.decode(value)
            result = handler(key_s, record)
            if asyncio.iscoroutine(result):
                await result
        except CodecError as exc:
            self._metrics.state_rejected.labels(topic, exc.reason).inc()
            _log.warning(
                "state_record_skipped",
                topic=topic,
                offset=offset,
                key=key_s,
                reason=exc.reason,
                error=str(exc),
            )
            return
        except (KeyError, TypeError, ValueError) as exc:
            self._metrics.state_rejected.labels(topic, "bad_value").inc()
            _log.warning(
                "state_record_skipped",
                topic=topic,
                offset=offset,
                key=key_s,
                reason="bad_value",
                error=repr(exc),
            )
            return
        self._metrics.state_records.labels(topic).inc()

    async def _apply_model(self, key: str, record: dict[str, Any] | None) -> None:
        if record is None:
            self._state.published.pop(key, None)
            return
        self._state.published[record["campaign_id"]] = record
        history = self._state.history.setdefault(record["campaign_id"], [])
        history[:] = [*[r for r in history if r["version"] != record["version"]][-7:], record]
        result = self._on_model(record)
        if asyncio.iscoroutine(result):
            await result
