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

Both rules rest on the skew alone, which a source holding events breaks (the simulator
retrying through a broker stop, the collector after a 503): live sources therefore state
claims of their own in the raw topic, and a claim above never passes the least claim of the
partition's live sources (`RawSources`: learning after an assignment, end of source, expiry).

Claims only grow; a partition that changes hands starts without a claim in the new owner
(readers keep the largest claim they saw, which stays true).

A source with a clock of its own (a replay of history, whose events are far older than the
wall clock) writes Watermark records into every raw partition after its records; ingestion
keeps them out of the transform and forwards them as claims of that clock (`source`),
again after the output of the raw records before them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from services.common.watermark import LIVE
from services.ingestion.raw_sources import RawSources

__all__ = ["RawClock"]


class RawClock:
    def __init__(self, skew_ms: int, sources: RawSources | None = None) -> None:
        if skew_ms < 0:
            raise ValueError(f"skew_ms must be >= 0, got {skew_ms}")
        self.skew_ms = skew_ms
        self.sources = sources or RawSources(learn_ms=0, expiry_ms=30_000)
        self._claims: dict[str, dict[int, int]] = {LIVE: {}}  # clock -> raw partition -> W
        self._stated: dict[str, dict[int, int]] = {LIVE: {}}  # claims last written out

    def copy(self) -> RawClock:
        """A clock to advance for a transaction; it replaces this one once that commits."""
        other = RawClock(self.skew_ms, self.sources.copy())
        other._claims = {clock: dict(c) for clock, c in self._claims.items()}
        other._stated = {clock: dict(c) for clock, c in self._stated.items()}
        return other

    def revoked(self, partitions: Iterable[int]) -> None:
        partitions = list(partitions)
        self.sources.revoked(partitions)
        for r in partitions:
            for claims in (*self._claims.values(), *self._stated.values()):
                claims.pop(r, None)

    def source(self, clock: str, r: int, mark: int, producer: str = "") -> None:
        """A source's Watermark read at this point of raw partition r: a live source's claim
        bounds ingestion's (`RawSources`); another clock's is forwarded as that clock's."""
        if clock == LIVE:
            self.sources.stated(r, producer, mark)
        else:
            self._raise(r, mark, clock)

    def read(self, newest: Mapping[int, int], at_ms: int) -> None:
        """A batch (fetched at wall time `at_ms`) read raw partitions up to records stamped
        `newest[r]` (ms)."""
        self.sources.answered(at_ms)
        for r, ts in newest.items():
            self._live(r, ts - self.skew_ms - 1)

    def caught_up(self, partitions: Iterable[int], asked_at_ms: int) -> None:
        """Kafka said, when asked at `asked_at_ms`, that nothing is left to read on these."""
        self.sources.answered(asked_at_ms)
        for r in partitions:
            self._live(r, asked_at_ms - self.skew_ms - 1)

    def _live(self, r: int, candidate: int) -> None:
        bounded = self.sources.bound(r, candidate)
        if bounded is not None:
            self._raise(r, bounded)

    def claims(self) -> dict[str, dict[int, int]]:
        """Claims by clock (the live clock first), then by raw partition."""
        return {clock: dict(claims) for clock, claims in self._claims.items() if claims}

    def changed(self) -> bool:
        """Whether any claim moved since `stated()` was last called."""
        return self.claims() != self._stated

    def stated(self, claims: Mapping[str, Mapping[int, int]]) -> None:
        """These claims were committed (in a transaction's output)."""
        self._stated = {clock: dict(c) for clock, c in claims.items()}

    def _raise(self, r: int, mark: int, clock: str = LIVE) -> None:
        claims = self._claims.setdefault(clock, {})
        current = claims.get(r)
        if current is None or mark > current:
            claims[r] = mark
