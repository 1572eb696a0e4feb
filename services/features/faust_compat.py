"""Every place the features worker relies on faust beyond its documented API, in one module.

faust-streaming has no public way to do these; each is wrapped here, and
tests/unit/features/test_faust_compat.py fails loudly when a faust upgrade changes what it
relies on (names, signatures, or the behaviour itself). The producer buffer's flush has an
adapter of its own (`producer_drain.py`, same idea, its own test).

- `FeaturesApp._new_producer` (private factory): installs `producer_drain` on faust's
  producer before it starts.
- `FeaturesApp.maybe_start_producer`: faust awaits it before *every* record it produces
  (table changelogs included) and its version yields to the event loop three times a call,
  which made the single task that drains the changelog buffer the join's bottleneck; once
  the producer runs (and outside a transaction) it is returned directly.
- `set_changelog_event(stream, event)`: faust writes a table change to the changelog
  partition of the stream's *current event* (`Stream._set_current_event`); the stats agent
  folds a batch of events and writes each key once, so it names which event a write
  belongs to.
- `recovery_completed(app)`: whether the tables finished replaying their changelogs
  (`app.tables.recovery.completed`), before which stats must not be published again.
- `readiness(app)`: whether the worker processes — it holds partitions, is not rebalancing,
  its tables are recovered and its stream flow runs (`app.rebalancing`, `app.in_recovery`,
  `app.flow_control`, the consumer's assignment): the `/readyz` page.
- `changelog_topic_name(table)`: the changelog topic faust will declare for a table, so the
  worker can create it first — on a broker still creating its own internal topics faust's
  declaration can lose that race, its consumer then ignores the "missing" changelog for
  minutes and the stats agent fails with PartitionsMismatch.
- `FeaturesApp._new_transport` (private factory): faust's aiokafka transport with the
  consumer of `commit_gaps.py`, which commits past transaction markers faust would otherwise
  stall on for good, reads committed records only, and overrides the consumer's
  `on_partitions_assigned` to restart the worker on gaining partitions (`rejoin.py`).
- `quiet_library_loggers(level)`: faust's worker leaves aiokafka/faust/mode loggers at DEBUG,
  so every produced record built a log record only to drop it (a few % of CPU per click).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import faust

from services.features.commit_gaps import GapSafeTransport
from services.features.producer_drain import drain_before_commit

__all__ = [
    "CHECKED_FAUST",
    "FeaturesApp",
    "changelog_topic_name",
    "quiet_library_loggers",
    "readiness",
    "recovery_completed",
    "set_changelog_event",
]

# The faust-streaming release these adapters were checked against (the test pins it).
CHECKED_FAUST = "0.15.3"

Hook = Callable[[], Awaitable[None]]


class FeaturesApp(faust.App):
    """faust.App with start/stop hooks for admuse's own resources and the two producer
    adaptations above."""

    admuse_start: Hook | None = None
    admuse_stop: Hook | None = None

    async def on_start(self) -> None:
        await super().on_start()
        if self.admuse_start is not None:
            await self.admuse_start()

    async def on_stop(self) -> None:
        if self.admuse_stop is not None:
            await self.admuse_stop()
        await super().on_stop()

    def _new_producer(self) -> Any:
        return drain_before_commit(super()._new_producer())

    def _new_transport(self) -> Any:
        return GapSafeTransport(self.conf.broker_consumer, self)

    async def maybe_start_producer(self) -> Any:
        producer = self.producer
        if not self.in_transaction and producer.started:
            return producer
        return await super().maybe_start_producer()


def set_changelog_event(stream: faust.StreamT, event: faust.EventT) -> None:
    """Make `event` the stream's current event: the next table write goes to its partition."""
    stream._set_current_event(event)  # type: ignore[attr-defined]


def recovery_completed(app: faust.App) -> bool:
    """Whether every table finished replaying its changelog."""
    return bool(app.tables.recovery.completed.is_set())


def readiness(app: faust.App) -> dict[str, Any]:
    """Whether the worker is processing its partitions, and each condition of it."""
    assigned = len(app.consumer.assignment())
    state = {
        "assigned_partitions": assigned,
        "rebalancing": bool(app.rebalancing),
        "recovered": recovery_completed(app) and not app.in_recovery,
        "flowing": bool(app.flow_control.is_active()),
    }
    state["ready"] = (
        assigned > 0 and not state["rebalancing"] and state["recovered"] and state["flowing"]
    )
    return state


def changelog_topic_name(table: Any) -> str:
    """The changelog topic faust declares for `table`."""
    return str(table.changelog_topic.get_topic_name())


def quiet_library_loggers(level: str) -> None:
    """Set the libraries' loggers to the service's level (faust's worker leaves them DEBUG)."""
    for name in ("aiokafka", "faust", "mode"):
        logging.getLogger(name).setLevel(level)
