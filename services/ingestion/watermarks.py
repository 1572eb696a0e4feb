"""How far ingestion has worked off each raw partition, in event time: its watermark claims.

Ingestion states, per partition of admuse.events.raw it owns, a time W such that every raw
record of that partition with ``occurred_at <= W`` has been forwarded, dead-lettered or
dropped. It writes the claims as a Watermark record into *every* partition of admuse.events
in the same transaction as the output they cover (`stream`), so a reader that reaches the
record has read everything it speaks for.

What it may claim rests on one assumption, the allowed skew: an event reaches the raw topic
at most ``skew_ms`` after it occurred (``occurred_at >= record timestamp - skew``); an event
that arrives later than that is late by definition (counted, and still forwarded). Then:

- after a batch of partition r, the records not read yet were appended after the newest one
  read, so W_r = (newest record timestamp read) - skew - 1 — a restarted ingestion with a
  backlog therefore holds its watermark back to where the backlog starts;
- when Kafka says partition r has nothing left to read (position >= end offset, asked at
  wall time t), every later record is stamped after t, so W_r = t - skew - 1: idle inputs
  advance with the wall clock and a quiet spell closes windows.

Claims only grow; a partition that changes hands starts without a claim in the new owner
(readers keep the largest claim they saw, which stays true).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = ["RawClock"]


class RawClock:
    def __init__(self, skew_ms: int) -> None:
        if skew_ms < 0:
            raise ValueError(f"skew_ms must be >= 0, got {skew_ms}")
        self.skew_ms = skew_ms
        self._claims: dict[int, int] = {}
        self._stated: dict[int, int] = {}  # claims last written out

    def revoked(self, partitions: Iterable[int]) -> None:
        for r in partitions:
            self._claims.pop(r, None)
            self._stated.pop(r, None)

    def read(self, newest: Mapping[int, int]) -> None:
        """A batch read raw partitions up to records stamped `newest[r]` (ms)."""
        for r, ts in newest.items():
            self._raise(r, ts - self.skew_ms - 1)

    def caught_up(self, partitions: Iterable[int], asked_at_ms: int) -> None:
        """Kafka said, when asked at `asked_at_ms`, that nothing is left to read on these."""
        for r in partitions:
            self._raise(r, asked_at_ms - self.skew_ms - 1)

    def claims(self) -> dict[int, int]:
        return dict(self._claims)

    def changed(self) -> bool:
        """Whether any claim moved since `stated()` was last called."""
        return self._claims != self._stated

    def stated(self, claims: Mapping[int, int]) -> None:
        """These claims were committed (in a transaction's output)."""
        self._stated = dict(claims)

    def _raise(self, r: int, mark: int) -> None:
        current = self._claims.get(r)
        if current is None or mark > current:
            self._claims[r] = mark
