"""What the features worker does with each record, without faust: decode, call the join, the
watermarks and the stats folding, count in metrics, encode what goes out.

`topology.py` declares the faust agents, tables and timers and hands every record to one of
these methods; each returns what the agent sends (keyed bytes), so the whole path from a raw
record to its outputs runs in unit tests over a dict for the table
(tests/unit/features/test_handlers.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from services.common.codec import MAGIC, CodecError, SchemaRegistry
from services.common.logging import get_logger
from services.common.topics import Topics
from services.common.watermark import (
    DECIDED,
    LIVE,
    PartitionWatermark,
    WatermarkCodec,
    WatermarkGauges,
)
from services.features.attribution import JOIN_TYPES, RewardRule
from services.features.effects import attribute_effects
from services.features.join import JoinTable, Outputs
from services.features.metrics import FeaturesMetrics
from services.features.settings import Settings
from services.features.stats import Counters, Partial, StatsKey, fold_partial, stats_record, totals
from services.features.watermark import EventsMarks, JoinMarks

__all__ = ["Handlers", "Keyed", "RewardRules", "now_ms"]

log = get_logger(__name__)

Keyed = tuple[bytes, bytes]  # (key, value) to send


def now_ms() -> int:
    return int(time.time() * 1000)


def record_ms(timestamp: float | None) -> int | None:
    """A record's timestamp (faust: seconds) in epoch ms; None when it has none."""
    if timestamp is None or not timestamp > 0:
        return None
    return round(timestamp * 1000)


class RewardRules:
    """How each campaign's events become a reward, from the campaigns topic's current view
    (the default rule for a campaign not known yet or with a bad reward spec)."""

    def __init__(
        self, campaigns: Mapping[str, Mapping[str, Any]], metrics: FeaturesMetrics
    ) -> None:
        self.campaigns, self.metrics = campaigns, metrics

    def __call__(self, campaign_id: str) -> RewardRule:
        campaign = self.campaigns.get(campaign_id)
        if campaign is None:
            return RewardRule()
        try:
            return RewardRule.from_campaign(campaign)
        except ValueError as exc:
            self.metrics.bad_records.labels("campaigns", "bad_reward_spec").inc()
            log.warning("bad_reward_spec", campaign_id=campaign_id, error=str(exc))
            return RewardRule()


class Handlers:
    """The worker's logic per input; holds the codecs, metrics and watermark state."""

    def __init__(
        self,
        settings: Settings,
        topics: Topics,
        registry: SchemaRegistry,
        metrics: FeaturesMetrics,
        join: JoinTable,
        creatives: Mapping[str, Mapping[str, Any]],
    ) -> None:
        self.settings, self.topics, self.metrics, self.join = settings, topics, metrics, join
        self.creatives = creatives
        self.decision_codec = registry.codec("Decision")
        self.event_codec = registry.codec("AdEvent")
        self.reward_codec = registry.codec("Reward")
        self.stats_codec = registry.codec("CreativeStats")
        self.erasure_codec = registry.codec("ErasureRequest")
        self.wm_codec = WatermarkCodec(registry)
        self.events_marks = EventsMarks()
        self.join_marks = JoinMarks(topics.events.partitions)
        self.decisions_marks: dict[tuple[str, int], PartitionWatermark] = {}
        self.events_gauges = WatermarkGauges(
            metrics.registry, "admuse_features_events", "admuse.events"
        )
        self.decisions_gauges = WatermarkGauges(
            metrics.registry, "admuse_features_decisions", "admuse.decisions (inference's clock)"
        )
        self.close_gauges = WatermarkGauges(
            metrics.registry,
            "admuse_features_close",
            "window closing (least over events partitions)",
        )

    # -- admuse.events → events-by-decision -------------------------------------------------

    def route_event(self, value: bytes, partition: int) -> bytes | None:
        """The key (decision_id) to re-key an event under, or None (watermark, bad, unjoinable)."""
        if self.wm_codec.is_watermark(value):
            self._on_events_watermark(partition, value)
            return None
        try:
            event = self.event_codec.decode(value)
        except CodecError as exc:
            self._bad("events", exc)
            return None
        if not event.get("decision_id") or event["type"] not in JOIN_TYPES:
            self.metrics.events.labels(event["type"], "unjoinable").inc()
            return None
        return str(event["decision_id"]).encode()

    def _on_events_watermark(self, partition: int, value: bytes) -> None:
        """A Watermark in events partition `partition`: everything before it was re-keyed."""
        try:
            record = self.wm_codec.decode(value)
        except CodecError as exc:
            self._bad("events", exc)
            return
        mark = self.events_marks.merge(partition, record)
        if mark is not None and record["source"] == LIVE:
            self.events_gauges.set(partition, mark)

    def tick_command(self) -> bytes | None:
        """The events watermarks read so far, for every join partition (None: none yet)."""
        marks = self.events_marks.marks()
        if not marks:
            return None
        return json.dumps({"tick": marks, "at": now_ms()}).encode()

    def erase_command(self, value: bytes) -> bytes | None:
        """An ErasureRequest as the command every join partition applies."""
        try:
            request = self.erasure_codec.decode(value)
        except CodecError as exc:
            self._bad("erasure", exc)
            return None
        self.metrics.erasures.inc()
        log.info("erasure_requested", request_id=request["request_id"])
        return json.dumps(
            {"erase": request["user_id"], "request_id": request["request_id"]}
        ).encode()

    def revoked(self, by_decision_topic: str, revoked: Iterable[Any]) -> None:
        """Partitions this worker lost: drop what it kept for them."""
        revoked = list(revoked)
        lost = {tp.partition for tp in revoked if tp.topic == by_decision_topic}
        self.join.forget(lost)
        self.join_marks.forget(lost)
        self.events_marks.revoked(
            tp.partition for tp in revoked if tp.topic == self.topics.events.name
        )

    # -- decisions ⨝ events-by-decision → rewards -------------------------------------------

    def on_join_input(
        self, topic: str, value: bytes, partition: int, offset: int, timestamp: float
    ) -> list[Keyed]:
        """One record of the join's inputs; returns the Rewards to publish."""
        now = now_ms()
        decisions = topic == self.topics.decisions.name
        if self.wm_codec.is_watermark(value):
            out = self._on_decisions_mark(value, partition, offset) if decisions else None
            self.metrics.unmatched_events.inc(out.unmatched if out else 0)
            return []  # (a Watermark anywhere else is not for the join)
        stamp = record_ms(timestamp)  # stamps what this record settles (join.py)
        if decisions:
            out = self._on_decision(value, partition, offset, now, stamp)
        elif value[:2] == MAGIC:
            out = self._on_event(value, partition, offset, now, timestamp, stamp)
        else:
            out = self._on_control(value, partition, offset, now)
        return self._rewards(out) if out is not None else []

    def _on_decision(
        self, value: bytes, partition: int, offset: int, now: int, stamp: int | None
    ) -> Outputs | None:
        try:
            decision = self.decision_codec.decode(value)
        except CodecError as exc:
            self._bad("decisions", exc)
            return None
        out = self.join.on_decision(decision, partition, offset, now, stamp)
        for v in out.verdicts:
            if v.startswith("held:"):
                self.metrics.events.labels("held", v[5:]).inc()
            else:
                self.metrics.decisions.labels(v).inc()
        self._count_late(out)
        return out

    def _on_event(
        self, value: bytes, partition: int, offset: int, now: int, ts: float, stamp: int | None
    ) -> Outputs | None:
        try:
            event = self.event_codec.decode(value)
        except CodecError as exc:
            self._bad("events", exc)
            return None
        out = self.join.on_event(event, partition, offset, now, stamp)
        for v in out.verdicts:
            self.metrics.events.labels(event["type"], v).inc()
        self._count_late(out)
        for reward in out.rewards:
            self.metrics.join_lag.labels(reward["outcome"]).observe(max(0.0, now / 1000 - ts))
        return out

    def _on_decisions_mark(self, value: bytes, partition: int, offset: int) -> Outputs | None:
        """A Watermark in decisions partition `partition`: its clock's decisions up to the
        merged mark are all read; held events waiting on it past their allowance expire."""
        try:
            record = self.wm_codec.decode(value)
        except CodecError as exc:
            self._bad("decisions", exc)
            return None
        clock = str(record["source"])
        marks = self.decisions_marks.setdefault((clock, partition), PartitionWatermark())
        mark = marks.merge(record)
        if mark is None:
            return None
        if clock == DECIDED:
            self.decisions_gauges.set(partition, mark)
        return self.join.on_decisions_mark(partition, offset, clock, mark)

    def _on_control(self, value: bytes, partition: int, offset: int, now: int) -> Outputs | None:
        try:
            command = json.loads(value)
        except ValueError:
            self.metrics.bad_records.labels("events-by-decision", "decode_error").inc()
            return None
        if "tick" in command:
            return self._on_tick(command, partition, offset, now)
        if "erase" in command:
            n = self.join.on_erase(command["erase"], partition)
            self.metrics.erased_states.inc(n)
            if n:
                log.info(
                    "erased", request_id=command.get("request_id"), partition=partition, states=n
                )
        return None

    def _on_tick(
        self, command: Mapping[str, Any], partition: int, offset: int, now: int
    ) -> Outputs | None:
        try:
            marks = {
                str(clock): {int(p): int(w) for p, w in by_partition.items()}
                for clock, by_partition in command["tick"].items()
            }
            wall = int(command["at"])
        except (AttributeError, KeyError, TypeError, ValueError):
            self.metrics.bad_records.labels("events-by-decision", "bad_tick").inc()
            return None
        clocks = self.join_marks.advance(partition, marks)
        live = clocks.pop(LIVE, None)
        if live is not None:
            self.close_gauges.set(partition, live)
        out = self.join.on_tick(partition, offset, live, sources=clocks, wall_ms=wall)
        self.metrics.unmatched_events.inc(out.unmatched)
        for due in out.closed_due:
            self.metrics.join_lag.labels("timeout").observe(max(0.0, (now - due) / 1000))
        return out

    def _rewards(self, out: Outputs) -> list[Keyed]:
        if out.replayed:
            self.metrics.replayed.inc()
        sent = []
        for reward in out.rewards:
            sent.append((reward["decision_id"].encode(), self.reward_codec.encode(reward)))
            self.metrics.rewards.labels(reward["outcome"]).inc()
            if not reward["shown"]:
                self.metrics.unshown.inc()
        return sent

    def _count_late(self, out: Outputs) -> None:
        self.metrics.late_events.inc(sum(v.endswith("late") for v in out.verdicts))

    def _bad(self, topic: str, exc: CodecError) -> None:
        self.metrics.bad_records.labels(topic, exc.reason).inc()
        log.warning("bad_record", topic=topic, reason=exc.reason, error=str(exc))

    # -- partials → stats ---------------------------------------------------------------------

    def partials(self) -> list[Keyed]:
        """The changed partial counters of the join partitions (coalesced), to publish."""
        out = []
        for group, partition, partial in self.join.take_dirty():
            body = {"key": group.to_json(), "p": partition, "c": partial.to_json()}
            out.append((group.key.encode(), json.dumps(body).encode()))
        return out

    def fold(
        self, values: Iterable[tuple[bytes, Any]], current: Callable[[str], Any]
    ) -> dict[str, tuple[dict[str, Any], Any]]:
        """Fold a batch of partials (value, source event) into the stats entries they change:
        ``{stats key: (entry, the event whose partition the write belongs to)}``."""
        changed: dict[str, tuple[dict[str, Any], Any]] = {}
        for value, source in values:
            try:
                body = json.loads(value)
                group = StatsKey.from_json(body["key"])
                partial = Partial.from_json(body["c"])
                partition = int(body["p"])
            except (ValueError, KeyError, TypeError):
                self.metrics.bad_records.labels("stats-partials", "decode_error").inc()
                continue
            before = changed[group.key][0] if group.key in changed else current(group.key)
            folded = fold_partial(before, group, partition, partial)
            if folded is not None:
                changed[group.key] = (folded, source)
        return changed

    def stats(self, entry: Mapping[str, Any]) -> list[Keyed]:
        """The CreativeStats records of one stats entry (cumulative and windowed)."""
        out = []
        for key, counters in totals(entry, self.settings.decay_half_life_s):
            record = self._stats_record(key, counters)
            out.append((key.key.encode(), self.stats_codec.encode(record)))
            self.metrics.stats_updates.inc()
        return out

    def _stats_record(self, key: StatsKey, counters: Counters) -> dict[str, Any]:
        s = self.settings
        creative = self.creatives.get(key.creative_id) or {}
        return stats_record(
            key,
            counters,
            prior_alpha=float(creative.get("prior_alpha") or s.prior_alpha),
            prior_beta=float(creative.get("prior_beta") or s.prior_beta),
            half_life_s=None if key.window_start is not None else s.decay_half_life_s,
            window_ms=s.stats_window_ms,
            now_ms=now_ms(),
        )

    # -- pages ------------------------------------------------------------------------------

    def effects(self, campaign_id: str, entries: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
        """The `/effects/<campaign_id>` page: attribute effects per segment."""
        rows = []
        for entry in entries:
            key, c = totals(entry, None)[0]
            if key.campaign_id == campaign_id:
                rows.append((key.segment, key.creative_id, c.impressions, c.clicks))
        attrs = {cid: c.get("attributes") or {} for cid, c in self.creatives.items()}
        effects = [e.to_json() for e in attribute_effects(rows, attrs)]
        return {"campaign_id": campaign_id, "effects": effects}
