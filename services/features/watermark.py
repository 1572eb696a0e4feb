"""How far the event stream has been read: the time up to which windows may close.

A window must not close while a click for it may still sit unread in ``admuse.events`` —
after a restart, the timer would otherwise close windows (reward 0) before the events
agent has caught up with the backlog, and the clicks would count as late. Ticks therefore
carry a watermark instead of the wall clock: *now* for a partition that has been read to
its high watermark, else the timestamp of the last event read from it; the minimum over
the assigned partitions. A partition that delivered nothing since it was assigned counts
as caught up when it is empty or Kafka says there is nothing to read (`settled`: the
`backlog` probe found no record between the group's committed offset and the end of the
log — a transactional writer's commit markers take offsets but are never delivered). Any
other holds every window until its first event is handled: a worker restarted after a crash
may take seconds to be delivered a partition's backlog, and closing windows meanwhile would
turn its clicks into late events. When the high watermark is not known yet, the partition
counts as caught up once ``idle_s`` has passed since the clock was first asked; a partition
neither settled nor delivering (the probe failed, or its records expired) stops holding
windows after ``backlog_s``.

Every window needs every events partition (events are partitioned by user, decisions by
decision), so while this worker owns fewer than all of them, it closes none: after a crash the
dead worker keeps its partitions until its session times out, and their clicks are read by
nobody meanwhile. With several workers sharing the partitions for good, that hold ends after
``backlog_s`` and each closes windows by its own partitions (one worker is the supported
setup).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass

__all__ = ["EventClock"]


@dataclass
class _Progress:
    next_offset: int
    timestamp_ms: int


class EventClock:
    def __init__(
        self, idle_s: float = 1.0, backlog_s: float = 60.0, partitions: int | None = None
    ) -> None:
        self.idle_s = idle_s
        self.backlog_s = backlog_s
        self.partitions = partitions  # of the events topic; None: do not check
        self._partial_since: float | None = None  # when this worker last owned fewer
        self._assigned: dict[Hashable, float | None] = {}  # partition -> first asked (monotonic)
        self._progress: dict[Hashable, _Progress] = {}
        self._settled: set[Hashable] = set()  # nothing to read since assigned (Kafka says)

    def assigned(self, partitions: Iterable[Hashable]) -> None:
        for tp in partitions:
            self._assigned.setdefault(tp, None)
        if self.partitions is not None and len(self._assigned) >= self.partitions:
            self._partial_since = None

    def revoked(self, partitions: Iterable[Hashable]) -> None:
        for tp in partitions:
            self._assigned.pop(tp, None)
            self._progress.pop(tp, None)
            self._settled.discard(tp)

    def settled(self, partitions: Iterable[Hashable]) -> None:
        """Kafka says these assigned partitions had nothing to read when they were assigned."""
        self._settled.update(tp for tp in partitions if tp in self._assigned)

    def observe(self, tp: Hashable, offset: int, timestamp_ms: int) -> None:
        """An event at `offset` of `tp` (record timestamp `timestamp_ms`) has been handled."""
        self._progress[tp] = _Progress(offset + 1, timestamp_ms)

    def watermark(
        self,
        now_ms: int,
        now_mono: float,
        highwater: Callable[[Hashable], int | None],
    ) -> int | None:
        """Time up to which the events have been read; None while that is unknown."""
        if self.partitions is not None and len(self._assigned) < self.partitions:
            # Some events partitions are not ours: right after a crash, the dead worker still
            # holds them until its session times out, and nobody reads their clicks. Events
            # are partitioned by user, not by decision, so any window may wait for them.
            if self._partial_since is None:
                self._partial_since = now_mono
            if now_mono - self._partial_since < self.backlog_s:
                return None
        else:
            self._partial_since = None
        mark = now_ms
        waiting = False
        for tp, since in self._assigned.items():
            hw = highwater(tp)
            progress = self._progress.get(tp)
            if progress is None:
                if since is None:
                    self._assigned[tp] = since = now_mono
                if hw == 0 or tp in self._settled:
                    continue  # nothing to read
                limit = self.idle_s if hw is None else self.backlog_s
                waiting = waiting or now_mono - since < limit
                continue
            if hw is not None and progress.next_offset >= hw:
                continue
            mark = min(mark, progress.timestamp_ms)
        return None if waiting else mark
