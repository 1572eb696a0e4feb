"""Event time in the features worker: watermarks read in admuse.events, carried to the join.

Ingestion writes Watermark records into every partition of admuse.events (see
services/common/watermark.py and docs/contracts.md). The events agent reads them in order
with the events: when it reaches one in events partition p, every event of p up to that
watermark has already been re-keyed into the join partitions. It merges the claims per events
partition (`EventsMarks`) and the tick timer forwards the marks it knows as a tick into
every join partition, after the events it re-keyed (one producer keeps order per partition).

Each join partition keeps the largest mark per events partition it was sent (`JoinMarks`) and
closes windows only up to the least of them over all events partitions (events are
partitioned by user, decisions by decision: any window may wait on any events partition).
An events partition without a mark yet holds every window — after a restart, after a
rebalance, while ingestion works off a raw backlog: nothing guesses from a wall clock.
Several workers may share the partitions: each forwards the marks of what it reads.

Marks are kept per clock (the Watermark's ``source``): the live clock of ingestion, and the
clock of each replayed log, whose decisions close by their own log's time (`join`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from services.common.watermark import LIVE, PartitionWatermark, least

__all__ = ["EventsMarks", "JoinMarks", "clock_of_entry", "held_clock"]


class EventsMarks:
    """The watermark of each events partition this worker reads, per clock (route side)."""

    def __init__(self) -> None:
        self._parts: dict[tuple[str, int], PartitionWatermark] = {}

    def merge(self, partition: int, record: Mapping[str, Any]) -> int | None:
        """A Watermark record read at this point of `partition`; its clock's watermark now."""
        slot = (str(record.get("source", LIVE)), partition)
        return self._parts.setdefault(slot, PartitionWatermark()).merge(record)

    def revoked(self, partitions: Iterable[int]) -> None:
        gone = set(partitions)
        for slot in [s for s in self._parts if s[1] in gone]:
            del self._parts[slot]

    def marks(self) -> dict[str, dict[int, int]]:
        """Known watermarks by clock and events partition (unknown ones left out)."""
        out: dict[str, dict[int, int]] = {}
        for (clock, p), part in self._parts.items():
            value = part.value
            if value is not None:
                out.setdefault(clock, {})[p] = value
        return out


class JoinMarks:
    """Per join partition and clock: the largest mark forwarded per events partition."""

    def __init__(self, events_partitions: int) -> None:
        self.events_partitions = events_partitions
        self._marks: dict[int, dict[str, dict[int, int]]] = {}

    def advance(
        self, join_partition: int, marks: Mapping[str, Mapping[int, int]]
    ) -> dict[str, int]:
        """Fold a tick's marks in; per clock, the time up to which this join partition may
        close windows (clocks not known on every events partition left out)."""
        clocks = self._marks.setdefault(join_partition, {})
        for clock, by_partition in marks.items():
            known = clocks.setdefault(clock, {})
            for p, w in by_partition.items():
                if w > known.get(p, w - 1):
                    known[p] = w
        return self.values(join_partition)

    def values(self, join_partition: int) -> dict[str, int]:
        out = {}
        for clock, known in self._marks.get(join_partition, {}).items():
            value = least(known, self.events_partitions)
            if value is not None:
                out[clock] = value
        return out

    def value(self, join_partition: int, clock: str = LIVE) -> int | None:
        return self.values(join_partition).get(clock)

    def forget(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            self._marks.pop(p, None)


def clock_of_entry(state: Mapping[str, Any]) -> str:
    """The clock an entry waits on: a pending decision its source's; held events the
    decisions' (when decision watermarks are used); the rest the live one."""
    if (state["k"] == "d" and state["status"] == "pending") or state["k"] == "e":
        return str(state.get("clock", LIVE))
    return LIVE


def held_clock(decisions_clock: str) -> str:
    """Heap name of the held events waiting on a clock of admuse.decisions."""
    return f"decisions:{decisions_clock}"
