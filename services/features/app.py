"""The faust worker: topics, tables, agents and pages, wired to the plain logic modules.

Data flow:

    admuse.events ──events agent──▶ <app>-events-by-decision (key decision_id) ─┐
    timer (ticks), erasure agent ──▶ <app>-events-by-decision (every partition) ─┤
    admuse.decisions (key decision_id) ──────────────────────────────────────────┴▶ join agent
        join agent ──▶ admuse.rewards (key decision_id)
                   └─▶ <app>-stats-partials (key stats group) ──stats agent──▶ admuse.stats

The join agent reads decisions and events-by-decision together (same partition count, so
a decision and its events meet in the same partition) and keeps its state in the ``join``
table; the stats agent sums the join partitions' partial counters in the ``stats`` table.
Both tables are in memory with changelog topics that faust creates and replays on start.
Processing is at-least-once; the replay guards in `join` and the absolute partials in
`stats` make its effect exactly-once (tests/integration/test_features_kill.py).

Windows close in event time only: ingestion's Watermark records in admuse.events are merged
by the events agent and forwarded by the tick timer into every join partition, after the
events they cover (`watermark`); a join partition closes a window once the least watermark
over all events partitions passes its end plus the grace. Several workers may share the
partitions: each forwards the watermarks of the events partitions it reads.
"""

from __future__ import annotations

import json
import logging
import time
from types import MappingProxyType
from typing import Any

import faust
from faust.web import Request, Response, View
from prometheus_client import generate_latest

from services.common.codec import MAGIC, CodecError, SchemaRegistry
from services.common.kafka import ensure_topics, wait_for_broker
from services.common.kafka_logs import install_startup_retry_filter
from services.common.logging import configure_logging, get_logger, stdlib_handlers
from services.common.security import build_ssl_context
from services.common.topics import DAY_MS, USER_DATA_RETENTION_MS, Topics, TopicSpec
from services.common.watermark import (
    DECIDED,
    LIVE,
    PartitionWatermark,
    WatermarkCodec,
    WatermarkGauges,
)
from services.features.attribution import JOIN_TYPES, RewardRule
from services.features.catalog import CompactedView
from services.features.effects import attribute_effects
from services.features.join import JoinConfig, JoinTable, Outputs
from services.features.metrics import FeaturesMetrics
from services.features.producer_drain import drain_before_commit
from services.features.settings import Settings
from services.features.stats import (
    Counters,
    Partial,
    StatsKey,
    fold_partial,
    stats_record,
    totals,
)
from services.features.watermark import EventsMarks, JoinMarks

__all__ = ["build_app", "main"]

log = get_logger(__name__)

STATS_BATCH = 1000  # partials folded together at most (see `stats_agent`)


def _now_ms() -> int:
    return int(time.time() * 1000)


def internal_topics(settings: Settings, topics: Topics) -> tuple[TopicSpec, TopicSpec]:
    """The worker's own repartition topics (named after the app id, prefix included)."""
    app_id = f"{settings.kafka.topic_prefix}{settings.app_id}"
    by_decision = TopicSpec(
        f"{app_id}-events-by-decision",
        topics.decisions.partitions,
        "delete",
        "decision_id",
        "AdEvent",
        retention_ms=USER_DATA_RETENTION_MS,  # events carry the user pseudonym
    )
    partials = TopicSpec(
        f"{app_id}-stats-partials",
        topics.stats.partitions,
        "delete",
        "stats key",
        None,
        retention_ms=7 * DAY_MS,
    )
    return by_decision, partials


class _App(faust.App):
    """faust.App with start/stop hooks for admuse's own resources."""

    admuse_start: Any = None
    admuse_stop: Any = None

    async def on_start(self) -> None:
        await super().on_start()
        if self.admuse_start is not None:
            await self.admuse_start()

    async def on_stop(self) -> None:
        if self.admuse_stop is not None:
            await self.admuse_stop()
        await super().on_stop()

    def _new_producer(self) -> Any:
        """faust's producer, with a flush that drains its buffer before offsets are committed
        (producer_drain.py says why)."""
        return drain_before_commit(super()._new_producer())

    async def maybe_start_producer(self) -> Any:
        """faust awaits this before *every* record it produces (table changelogs included);
        its version yields to the event loop three times each call, which made the single
        task that drains the changelog buffer the join's bottleneck. Once the producer runs,
        return it directly."""
        producer = self.producer
        if not self.in_transaction and producer.started:
            return producer
        return await super().maybe_start_producer()


def _broker_kwargs(settings: Settings) -> dict[str, Any]:
    kafka = settings.kafka
    kw: dict[str, Any] = {
        "broker": [f"kafka://{h.strip()}" for h in kafka.bootstrap_servers.split(",")],
        "broker_client_id": kafka.client_id,
        "broker_request_timeout": kafka.request_timeout_ms / 1000,
    }
    ssl_context = build_ssl_context(kafka)  # the same context the aiokafka clients get
    if kafka.sasl_mechanism:
        password = kafka.sasl_password.get_secret_value() if kafka.sasl_password else ""
        kw["broker_credentials"] = faust.SASLCredentials(
            username=kafka.sasl_username,
            password=password,
            mechanism=kafka.sasl_mechanism,
            ssl_context=ssl_context,
        )
    elif ssl_context is not None:
        kw["broker_credentials"] = faust.SSLCredentials(ssl_context)
    return kw


def build_app(settings: Settings) -> faust.App:
    """The faust app with every agent, table, timer and page registered."""
    kafka = settings.kafka
    topics = Topics.from_settings(kafka)
    registry = SchemaRegistry.load()
    decision_codec, event_codec = registry.codec("Decision"), registry.codec("AdEvent")
    reward_codec, stats_codec = registry.codec("Reward"), registry.codec("CreativeStats")
    erasure_codec = registry.codec("ErasureRequest")
    wm_codec = WatermarkCodec(registry)
    metrics = FeaturesMetrics()
    by_decision_spec, partials_spec = internal_topics(settings, topics)
    n_join = by_decision_spec.partitions

    app = _App(
        f"{kafka.topic_prefix}{settings.app_id}",
        **_broker_kwargs(settings),
        store="memory://",
        datadir=str(settings.state_dir),
        autodiscover=False,
        topic_allow_declare=True,
        topic_disable_leader=True,
        topic_replication_factor=settings.replication_factor,
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 3),
        broker_commit_interval=settings.commit_interval_s,
        producer_acks=-1,
        producer_linger=settings.producer_linger_s,
        producer_max_batch_size=262_144,
        web_enabled=True,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_in_thread=False,
    )

    def raw_topic(*names: str) -> faust.TopicT:
        return app.topic(*names, key_serializer="raw", value_serializer="raw")

    decisions_and_events = raw_topic(topics.decisions.name, by_decision_spec.name)
    events_in = raw_topic(topics.events.name)
    by_decision = raw_topic(by_decision_spec.name)
    partials_topic = raw_topic(partials_spec.name)
    erasure_in = raw_topic(topics.erasure.name)
    rewards_out = raw_topic(topics.rewards.name)
    stats_out = raw_topic(topics.stats.name)

    join_table = app.Table("join", partitions=n_join, help="Attribution joins and partials.")
    stats_table = app.Table("stats", partitions=partials_spec.partitions, help="Summed stats.")

    campaigns = CompactedView(
        kafka,
        topics.campaigns.name,
        topics.campaigns.partitions,
        registry.codec("Campaign"),
        on_bad=lambda r: metrics.bad_records.labels("campaigns", r).inc(),
    )
    creatives = CompactedView(
        kafka,
        topics.creatives.name,
        topics.creatives.partitions,
        registry.codec("Creative"),
        on_bad=lambda r: metrics.bad_records.labels("creatives", r).inc(),
    )

    def spec_for(campaign_id: str) -> RewardRule:
        campaign = campaigns.values.get(campaign_id)
        if campaign is None:
            return RewardRule()
        try:
            return RewardRule.from_campaign(campaign)
        except ValueError as exc:
            metrics.bad_records.labels("campaigns", "bad_reward_spec").inc()
            log.warning("bad_reward_spec", campaign_id=campaign_id, error=str(exc))
            return RewardRule()

    join = JoinTable(
        join_table,
        JoinConfig(
            default_window_ms=settings.default_window_ms,
            close_grace_ms=settings.close_grace_ms,
            retention_ms=int(settings.late_retention_s * 1000),
            max_hold_ms=settings.max_hold_ms,
            decision_watermarks=settings.decision_watermarks,
            stats_window_ms=settings.stats_window_ms,
            half_life_s=settings.decay_half_life_s,
        ),
        spec_for,
    )

    async def start_hook() -> None:
        # The changelogs are created here too, before faust's consumer first asks for metadata:
        # on a broker that is still creating its own internal topics, faust's declaration can
        # lose that race, the consumer then ignores the "missing" changelog for minutes and the
        # stats agent fails with PartitionsMismatch.
        changelogs = [
            TopicSpec(
                table.changelog_topic.get_topic_name(),
                table.partitions,
                "compact",
                "table key",
                None,
                # held events carry the user pseudonym: an erased (deleted) entry's old
                # values are compacted away within the erasure bound
                extra=MappingProxyType({"max.compaction.lag.ms": str(USER_DATA_RETENTION_MS)}),
            )
            for table in (join_table, stats_table)
        ]
        await wait_for_broker(kafka, 60)  # refused TLS/SASL credentials fail here, clearly
        await ensure_topics(
            kafka,
            [*topics, by_decision_spec, partials_spec, *changelogs],
            replication_factor=settings.replication_factor,
        )
        # The worker's own logging setup leaves the libraries' loggers at DEBUG, so every
        # produced record built a log record (a few % of the CPU per click) only to drop it.
        for name in ("aiokafka", "faust", "mode"):
            logging.getLogger(name).setLevel(settings.log.level)
        install_startup_retry_filter()  # on the worker's own handlers too

        await campaigns.start()
        await creatives.start()
        log.info("features_starting", app_id=app.conf.id, join_partitions=n_join)

    async def stop_hook() -> None:
        await campaigns.stop()
        await creatives.stop()

    app.admuse_start = start_hook
    app.admuse_stop = stop_hook

    events_marks = EventsMarks()
    join_marks = JoinMarks(topics.events.partitions)
    events_gauges = WatermarkGauges(metrics.registry, "admuse_features_events", "admuse.events")
    decisions_gauges = WatermarkGauges(
        metrics.registry, "admuse_features_decisions", "admuse.decisions (inference's clock)"
    )
    decisions_marks: dict[tuple[str, int], PartitionWatermark] = {}
    close_gauges = WatermarkGauges(
        metrics.registry, "admuse_features_close", "window closing (least over events partitions)"
    )

    @app.on_partitions_revoked.connect
    async def _revoked(app: faust.App, revoked: set[Any], **_: Any) -> None:
        lost = {tp.partition for tp in revoked if tp.topic == by_decision_spec.name}
        join.forget(lost)
        join_marks.forget(lost)
        events_marks.revoked(tp.partition for tp in revoked if tp.topic == topics.events.name)

    # -- agents ---------------------------------------------------------------------------

    @app.agent(events_in)
    async def route_events(stream: faust.StreamT) -> None:
        """Re-key events by decision_id so they meet their decision's partition."""
        async for ev in stream.events():
            msg = ev.message
            if wm_codec.is_watermark(ev.value):
                _on_watermark(msg.partition, ev.value)
                continue
            try:
                event = event_codec.decode(ev.value)
            except CodecError as exc:
                _bad("events", exc)
                event = None
            if event is None:
                pass
            elif not event.get("decision_id") or event["type"] not in JOIN_TYPES:
                metrics.events.labels(event["type"], "unjoinable").inc()
            else:
                await by_decision.send(
                    key=event["decision_id"].encode(), value=ev.value, timestamp=msg.timestamp
                )

    def _on_watermark(partition: int, value: bytes) -> None:
        """A Watermark in events partition `partition`: everything before it was re-keyed."""
        try:
            record = wm_codec.decode(value)
        except CodecError as exc:
            _bad("events", exc)
            return
        mark = events_marks.merge(partition, record)
        if mark is not None and record["source"] == LIVE:
            events_gauges.set(partition, mark)

    @app.agent(decisions_and_events)
    async def join_agent(stream: faust.StreamT) -> None:
        async for ev in stream.events():
            msg = ev.message
            now = _now_ms()
            if wm_codec.is_watermark(ev.value):
                if msg.topic == topics.decisions.name:
                    out = _on_decisions_mark(ev.value, msg.partition, msg.offset)
                    metrics.unmatched_events.inc(out.unmatched if out else 0)
                continue  # (a Watermark anywhere else is not for this agent)
            if msg.topic == topics.decisions.name:
                out = _on_decision(ev.value, msg.partition, msg.offset, now)
            elif ev.value[:2] == MAGIC:
                out = _on_event(ev.value, msg.partition, msg.offset, now, msg.timestamp)
            else:
                out = _on_control(ev.value, msg.partition, msg.offset, now)
            if out is not None:
                await _publish(out, now)

    def _on_decision(value: bytes, partition: int, offset: int, now: int) -> Outputs | None:
        try:
            decision = decision_codec.decode(value)
        except CodecError as exc:
            _bad("decisions", exc)
            return None
        out = join.on_decision(decision, partition, offset, now)
        for v in out.verdicts:
            if v.startswith("held:"):
                metrics.events.labels("held", v[5:]).inc()
            else:
                metrics.decisions.labels(v).inc()
        _count_late(out)
        return out

    def _on_event(value: bytes, partition: int, offset: int, now: int, ts: float) -> Outputs | None:
        try:
            event = event_codec.decode(value)
        except CodecError as exc:
            _bad("events", exc)
            return None
        out = join.on_event(event, partition, offset, now)
        for v in out.verdicts:
            metrics.events.labels(event["type"], v).inc()
        _count_late(out)
        for reward in out.rewards:
            metrics.join_lag.labels(reward["outcome"]).observe(max(0.0, now / 1000 - ts))
        return out

    def _on_decisions_mark(value: bytes, partition: int, offset: int) -> Outputs | None:
        """A Watermark in decisions partition `partition`: its clock's decisions up to the
        merged mark are all read; held events waiting on it past their allowance expire."""
        try:
            record = wm_codec.decode(value)
        except CodecError as exc:
            _bad("decisions", exc)
            return None
        clock = str(record["source"])
        mark = decisions_marks.setdefault((clock, partition), PartitionWatermark()).merge(record)
        if mark is None:
            return None
        if clock == DECIDED:
            decisions_gauges.set(partition, mark)
        return join.on_decisions_mark(partition, offset, clock, mark)

    def _on_control(value: bytes, partition: int, offset: int, now: int) -> Outputs | None:
        try:
            command = json.loads(value)
        except ValueError:
            metrics.bad_records.labels("events-by-decision", "decode_error").inc()
            return None
        if "tick" in command:
            try:
                marks = {
                    str(clock): {int(p): int(w) for p, w in by_partition.items()}
                    for clock, by_partition in command["tick"].items()
                }
                wall = int(command["at"])
            except (AttributeError, KeyError, TypeError, ValueError):
                metrics.bad_records.labels("events-by-decision", "bad_tick").inc()
                return None
            clocks = join_marks.advance(partition, marks)
            live = clocks.pop(LIVE, None)
            if live is not None:
                close_gauges.set(partition, live)
            out = join.on_tick(partition, offset, live, sources=clocks, wall_ms=wall)
            metrics.unmatched_events.inc(out.unmatched)
            for due in out.closed_due:
                metrics.join_lag.labels("timeout").observe(max(0.0, (now - due) / 1000))
            return out
        if "erase" in command:
            n = join.on_erase(command["erase"], partition)
            metrics.erased_states.inc(n)
            if n:
                log.info(
                    "erased", request_id=command.get("request_id"), partition=partition, states=n
                )
        return None

    def _count_late(out: Outputs) -> None:
        metrics.late_events.inc(sum(v.endswith("late") for v in out.verdicts))

    def _bad(topic: str, exc: CodecError) -> None:
        metrics.bad_records.labels(topic, exc.reason).inc()
        log.warning("bad_record", topic=topic, reason=exc.reason, error=str(exc))

    async def _publish(out: Outputs, now: int) -> None:
        if out.replayed:
            metrics.replayed.inc()
        for reward in out.rewards:
            await rewards_out.send(
                key=reward["decision_id"].encode(), value=reward_codec.encode(reward)
            )
            metrics.rewards.labels(reward["outcome"]).inc()
            if not reward["shown"]:
                metrics.unshown.inc()

    @app.agent(partials_topic)
    async def stats_agent(stream: faust.StreamT) -> None:
        """Sum the join partitions' partials (published by `flush`), a batch at a time: in a
        burst many partials of one group arrive together, and the group's entry is written
        and its stats published once per batch, not once per partial. A batch is acked after
        it is processed; partials are absolute, so one processed again changes nothing."""
        async for events in stream.take_events(STATS_BATCH, within=settings.stats_batch_s):
            changed: dict[str, dict[str, Any]] = {}
            source: dict[str, faust.EventT] = {}
            for ev in events:
                try:
                    body = json.loads(ev.value)
                    group = StatsKey.from_json(body["key"])
                    partial = Partial.from_json(body["c"])
                    partition = int(body["p"])
                except (ValueError, KeyError, TypeError):
                    metrics.bad_records.labels("stats-partials", "decode_error").inc()
                    continue
                current = changed.get(group.key) or stats_table.get(group.key)
                folded = fold_partial(current, group, partition, partial)
                if folded is not None:
                    changed[group.key] = folded
                    source[group.key] = ev
            for key, folded in changed.items():
                # faust writes a table change to the changelog partition of the current event:
                # make that a partial of this key (partials are partitioned by key).
                stream._set_current_event(source[key])
                stats_table[key] = folded
                await _publish_stats(folded)

    async def _publish_stats(entry: dict[str, Any]) -> None:
        for skey, counters in totals(entry, settings.decay_half_life_s):
            record = _stats_record(skey, counters)
            await stats_out.send(key=skey.key.encode(), value=stats_codec.encode(record))
            metrics.stats_updates.inc()

    resend_stats = [False]  # after (re)assignment: publish every stats entry once more

    @app.on_partitions_assigned.connect
    async def _assigned_stats(app: faust.App, assigned: set[Any], **_: Any) -> None:
        if any(tp.topic == partials_spec.name for tp in assigned):
            resend_stats[0] = True

    @app.timer(settings.flush_interval_s)
    async def flush() -> None:
        """Publish changed partials (coalesced). Partials and stats are absolute values, and
        a worker publishes all of them again after it (re)loads its tables, so an output
        lost in a crash is replaced, never counted twice."""
        for group, partition, partial in join.take_dirty():
            body = {"key": group.to_json(), "p": partition, "c": partial.to_json()}
            await partials_topic.send(key=group.key.encode(), value=json.dumps(body).encode())
        if resend_stats[0] and app.tables.recovery.completed.is_set():
            resend_stats[0] = False
            for entry in list(stats_table.values()):
                await _publish_stats(entry)

    def _stats_record(key: StatsKey, counters: Counters) -> dict[str, Any]:
        creative = creatives.values.get(key.creative_id) or {}
        return stats_record(
            key,
            counters,
            prior_alpha=float(creative.get("prior_alpha") or settings.prior_alpha),
            prior_beta=float(creative.get("prior_beta") or settings.prior_beta),
            half_life_s=None if key.window_start is not None else settings.decay_half_life_s,
            window_ms=settings.stats_window_ms,
            now_ms=_now_ms(),
        )

    @app.agent(erasure_in)
    async def erasure_agent(stream: faust.StreamT) -> None:
        """Fan an erasure out to every join partition (state is partitioned by decision)."""
        async for ev in stream.events():
            try:
                request = erasure_codec.decode(ev.value)
            except CodecError as exc:
                _bad("erasure", exc)
                continue
            metrics.erasures.inc()
            log.info("erasure_requested", request_id=request["request_id"])
            command = json.dumps(
                {"erase": request["user_id"], "request_id": request["request_id"]}
            ).encode()
            for p in range(n_join):
                await by_decision.send(value=command, partition=p)

    @app.timer(settings.tick_interval_s)
    async def tick() -> None:
        """Forward the events watermarks read so far into every join partition, after the
        events re-keyed before them: each join partition closes windows up to the least."""
        marks = events_marks.marks()
        if not marks:
            return
        command = json.dumps({"tick": marks, "at": _now_ms()}).encode()
        for p in range(n_join):
            await by_decision.send(value=command, partition=p)

    # -- pages ----------------------------------------------------------------------------

    @app.page("/metrics")
    class MetricsPage(View):
        async def get(self, request: Request) -> Response:
            pending, held = join.counts()
            metrics.pending.set(pending)
            metrics.held.set(held)
            return self.bytes(
                generate_latest(metrics.registry), content_type="text/plain; version=0.0.4"
            )

    @app.page("/effects/{campaign_id}")
    class EffectsPage(View):
        async def get(self, request: Request, campaign_id: str) -> Response:
            rows = []
            for entry in list(stats_table.values()):
                key, c = totals(entry, None)[0]
                if key.campaign_id == campaign_id:
                    rows.append((key.segment, key.creative_id, c.impressions, c.clicks))
            attrs = {cid: c.get("attributes") or {} for cid, c in creatives.values.items()}
            effects = [e.to_json() for e in attribute_effects(rows, attrs)]
            return self.json({"campaign_id": campaign_id, "effects": effects})

    return app


def main() -> None:
    settings = Settings()
    configure_logging(settings.log.level, settings.log.format, service="features")
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    app = build_app(settings)
    # Keep configure_logging's structured handler: faust would install a plain-text one.
    app.conf.loghandlers = stdlib_handlers()
    worker = faust.Worker(
        app,
        loglevel=settings.log.level,
        quiet=True,
        redirect_stdouts=False,
        logging_config={"version": 1, "disable_existing_loggers": False},
    )
    worker.execute_from_commandline()
