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
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from services.common.watermark import PartitionWatermark, least

__all__ = ["EventsMarks", "JoinMarks"]


class EventsMarks:
    """The watermark of each events partition this worker reads (route side)."""

    def __init__(self) -> None:
        self._parts: dict[int, PartitionWatermark] = {}

    def merge(self, partition: int, record: Mapping[str, Any]) -> int | None:
        """A Watermark record read at this point of `partition`; its watermark now."""
        return self._parts.setdefault(partition, PartitionWatermark()).merge(record)

    def revoked(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            self._parts.pop(p, None)

    def marks(self) -> dict[int, int]:
        """Known watermarks by events partition (partitions still unknown left out)."""
        out = {}
        for p, part in self._parts.items():
            value = part.value
            if value is not None:
                out[p] = value
        return out

    def emitted_at(self, partition: int) -> int | None:
        part = self._parts.get(partition)
        return part.emitted_at_ms if part is not None else None


class JoinMarks:
    """Per join partition: the largest mark forwarded per events partition (join side)."""

    def __init__(self, events_partitions: int) -> None:
        self.events_partitions = events_partitions
        self._marks: dict[int, dict[int, int]] = {}

    def advance(self, join_partition: int, marks: Mapping[int, int]) -> int | None:
        """Fold a tick's marks in; the time up to which this join partition may close."""
        known = self._marks.setdefault(join_partition, {})
        for p, w in marks.items():
            if w > known.get(p, w - 1):
                known[p] = w
        return least(known, self.events_partitions)

    def value(self, join_partition: int) -> int | None:
        return least(self._marks.get(join_partition, {}), self.events_partitions)

    def forget(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            self._marks.pop(p, None)
