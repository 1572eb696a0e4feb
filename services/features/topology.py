"""The features worker's topology, in the order data flows through it.

    admuse.events ──route_events──▶ <app>-events-by-decision (key decision_id) ─┐
    admuse.erasure ──erase──────▶ <app>-events-by-decision (every partition) ───┤
    tick timer (events watermarks) ▶ <app>-events-by-decision (every partition) ─┤
    admuse.decisions (key decision_id) ─────────────────────────────────────────┴▶ join
        join (table `join`) ──▶ admuse.rewards (key decision_id)
        flush timer ─────────▶ <app>-stats-partials (key stats group)
    <app>-stats-partials ──stats (table `stats`)──▶ admuse.stats

Agents only move bytes: every decision is `Handlers`' (plain code, tested without faust);
faust internals are `faust_compat`'s. The join reads decisions and events-by-decision together
(same partition count, so a decision and its events meet in one partition) and keeps its
state in the `join` table; `stats` sums the join partitions' partial counters. Both tables are
in memory with changelog topics faust replays on start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import faust
from faust.web import Request, Response, View
from prometheus_client import generate_latest

from services.common.topics import TopicSpec
from services.features.faust_compat import readiness, recovery_completed, set_changelog_event
from services.features.handlers import Handlers
from services.features.join import JoinTable

__all__ = ["STATS_BATCH", "Tables", "declare_tables", "declare_topology"]

STATS_BATCH = 1000  # partials folded together at most (see `stats`)


@dataclass(frozen=True)
class Tables:
    join: Any  # faust Table: attribution joins and partials, partitioned like the decisions
    stats: Any  # faust Table: summed stats, partitioned like the partials


def declare_tables(app: faust.App, by_decision: TopicSpec, partials: TopicSpec) -> Tables:
    return Tables(
        join=app.Table("join", partitions=by_decision.partitions, help="Joins and partials."),
        stats=app.Table("stats", partitions=partials.partitions, help="Summed stats."),
    )


def declare_topology(
    app: faust.App,
    h: Handlers,
    join: JoinTable,
    tables: Tables,
    by_decision_spec: TopicSpec,
    partials_spec: TopicSpec,
) -> None:
    """Register the agents, timers, hooks and pages on `app`."""
    s, topics = h.settings, h.topics

    def raw(*names: str) -> faust.TopicT:
        return app.topic(*names, key_serializer="raw", value_serializer="raw")

    events_in, erasure_in = raw(topics.events.name), raw(topics.erasure.name)
    by_decision = raw(by_decision_spec.name)
    join_in = raw(topics.decisions.name, by_decision_spec.name)
    rewards_out, partials, stats_out = (
        raw(topics.rewards.name),
        raw(partials_spec.name),
        raw(topics.stats.name),
    )
    n_join = by_decision_spec.partitions

    async def to_every_join_partition(command: bytes | None) -> None:
        for p in range(n_join if command is not None else 0):
            await by_decision.send(value=command, partition=p)

    # 1. events, re-keyed by decision so they meet their decision's partition
    @app.agent(events_in)
    async def route_events(stream: faust.StreamT) -> None:
        async for ev in stream.events():
            key = h.route_event(ev.value, ev.message.partition)
            if key is not None:
                await by_decision.send(key=key, value=ev.value, timestamp=ev.message.timestamp)

    # 2. erasures and 3. watermark ticks, fanned out to every join partition
    @app.agent(erasure_in)
    async def erase(stream: faust.StreamT) -> None:
        async for ev in stream.events():
            await to_every_join_partition(h.erase_command(ev.value))

    @app.timer(s.tick_interval_s)
    async def tick() -> None:
        await to_every_join_partition(h.tick_command())

    # 4. the join: decisions ⨝ events-by-decision → rewards
    @app.agent(join_in)
    async def join_agent(stream: faust.StreamT) -> None:
        async for ev in stream.events():
            m = ev.message
            for key, value in h.on_join_input(
                m.topic, ev.value, m.partition, m.offset, m.timestamp
            ):
                await rewards_out.send(key=key, value=value)

    @app.on_partitions_revoked.connect
    async def revoked(app: faust.App, revoked: set[Any], **_: Any) -> None:
        h.revoked(by_decision_spec.name, revoked)

    # 5. partials (absolute counters) out of the join, 6. summed into stats
    resend = {"stats": False}  # after (re)assignment: publish every stats entry once more

    @app.on_partitions_assigned.connect
    async def assigned(app: faust.App, assigned: set[Any], **_: Any) -> None:
        if any(tp.topic == partials_spec.name for tp in assigned):
            resend["stats"] = True

    @app.timer(s.flush_interval_s)
    async def flush() -> None:
        """Publish changed partials; after a (re)load, every stats entry again. Both are
        absolute values, so an output lost in a crash is replaced, never counted twice."""
        for key, value in h.partials():
            await partials.send(key=key, value=value)
        if resend["stats"] and recovery_completed(app):
            resend["stats"] = False
            for entry in list(tables.stats.values()):
                for key, value in h.stats(entry):
                    await stats_out.send(key=key, value=value)

    @app.agent(partials)
    async def stats(stream: faust.StreamT) -> None:
        """Sum partials a batch at a time: a group's entry is written and published once per
        batch. A batch is acked after it is processed; processed again it changes nothing."""
        async for events in stream.take_events(STATS_BATCH, within=s.stats_batch_s):
            changed = h.fold(((ev.value, ev) for ev in events), tables.stats.get)
            for key, (entry, source) in changed.items():
                set_changelog_event(stream, source)  # the write goes to this key's partition
                tables.stats[key] = entry
                for skey, value in h.stats(entry):
                    await stats_out.send(key=skey, value=value)

    # pages
    @app.page("/metrics")
    class MetricsPage(View):
        async def get(self, request: Request) -> Response:
            pending, held = join.counts()
            h.metrics.pending.set(pending)
            h.metrics.held.set(held)
            h.metrics.ready.set(1 if readiness(app)["ready"] else 0)
            body = generate_latest(h.metrics.registry)
            return self.bytes(body, content_type="text/plain; version=0.0.4")

    @app.page("/readyz")
    class ReadyPage(View):
        """200 while the worker processes (partitions held, tables recovered, no rebalance in
        progress); 503 while it joins the group, rebalances or replays its changelogs."""

        async def get(self, request: Request) -> Response:
            state = readiness(app)
            return self.json(state, status=200 if state["ready"] else 503)

    @app.page("/effects/{campaign_id}")
    class EffectsPage(View):
        async def get(self, request: Request, campaign_id: str) -> Response:
            return self.json(h.effects(campaign_id, list(tables.stats.values())))
