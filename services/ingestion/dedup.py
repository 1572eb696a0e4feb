"""The de-duplication window: event_ids forwarded within the horizon.

State lives in Kafka: on start (and on every partition assignment) ingestion reads
admuse.events back from `now - horizon` to the last stable offset and records the event_id of
each committed event (see `events_tail.py`). Local memory is only a cache of that topic, so a
restart — or a kill -9 — rebuilds exactly the set of events that were committed.

Scope: one instance sees the duplicates among the raw partitions it owns, plus everything
committed before its last assignment. With several instances, copies of one event that land on
partitions owned by different instances at the same moment can both pass: key raw records by
event_id (the HTTP collector does) so that copies share a partition.
"""

from __future__ import annotations

import struct

from services.common.codec import MAGIC

__all__ = ["DedupWindow", "event_id_of"]


class DedupWindow:
    """event_id → first-seen epoch-ms, insertion ordered; old entries fall out.

    `horizon_ms`: an id is a duplicate only if seen less than this long ago.
    `max_entries`: memory cap; when full the oldest entries are forgotten first.
    """

    def __init__(self, horizon_ms: int, max_entries: int) -> None:
        self.horizon_ms = horizon_ms
        self.max_entries = max_entries
        self._seen: dict[str, int] = {}
        self.evicted_for_space = 0

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._seen

    def is_duplicate(self, event_id: str, now_ms: int) -> bool:
        seen = self._seen.get(event_id)
        return seen is not None and seen > now_ms - self.horizon_ms

    def add(self, event_id: str, seen_ms: int) -> None:
        # Keep the first sighting; re-inserting would reorder and extend the horizon.
        if event_id not in self._seen:
            self._seen[event_id] = seen_ms
            if len(self._seen) > self.max_entries:
                del self._seen[next(iter(self._seen))]
                self.evicted_for_space += 1

    def expire(self, now_ms: int) -> int:
        """Drop entries older than the horizon from the front; return how many went."""
        cutoff = now_ms - self.horizon_ms
        dropped = 0
        seen = self._seen
        while seen:
            oldest = next(iter(seen))
            if seen[oldest] > cutoff:
                break
            del seen[oldest]
            dropped += 1
        return dropped


def event_id_of(value: bytes | None) -> str | None:
    """The event_id of an AdEvent single object (its first field), without a full decode.

    event_id is the first field of every AdEvent version: a zig-zag varint length and UTF-8
    bytes right after the 10-byte header. None for anything else.
    """
    if value is None or len(value) < 11 or value[:2] != MAGIC:
        return None
    pos, shift, acc = 10, 0, 0
    try:
        while True:
            byte = value[pos]
            pos += 1
            acc |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
            if shift > 63:
                return None
        length = (acc >> 1) ^ -(acc & 1)
        if length < 0 or pos + length > len(value):
            return None
        return value[pos : pos + length].decode("utf-8")
    except (IndexError, UnicodeDecodeError, struct.error):
        return None
