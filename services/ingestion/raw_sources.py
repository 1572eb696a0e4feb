"""The live sources of admuse.events.raw and what they claim, per raw partition.

A live source (services/common/source_watermark.py) writes Watermark records of the live clock
into every raw partition: "my events up to W that belong here come before this record". When
ingestion has read such a record, that claim holds for everything read. Ingestion's own claim
for the partition may then go no further than the least claim of its known live sources
(`bound`), so events a source still holds (refused, retried through a broker restart) keep
their windows open however long they are held. The allowed skew stays the bound for writers
that state nothing (and caps the sources' claims).

Liveness, decided here and documented in docs/contracts.md:
- a source that ends states `END_OF_TIME` and is forgotten (it may come back: a new claim);
- a source silent for `expiry_ms` of *live time* expires: counted
  (`admuse_ingestion_raw_sources_expired_total`) and logged, then forgotten. Live time only
  runs while Kafka answers ingestion (a fetch returned records, or the end offsets were read),
  and a gap between two answers counts at most `_GAP_CAP_MS`: a broker outage, which silences
  every source, expires none of them;
- after a partition is assigned (a start, a restart, a rebalance) ingestion knows none of its
  sources: it states no claim for it until `learn_ms` of live time has passed, long enough for
  every live source to state a claim again (they do every 500 ms, and within their producer's
  reconnect back-off after a broker outage), so a restart rebuilds the sources from the topic
  itself before any window can close on it.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass

from services.common.watermark import END_OF_TIME

__all__ = ["RawSources"]

_GAP_CAP_MS = 2000  # live time per Kafka answer, at most


@dataclass(slots=True)
class _Source:
    claim: int
    seen_at: int  # live time when its last claim was read


class RawSources:
    def __init__(self, learn_ms: int, expiry_ms: int) -> None:
        if learn_ms < 0 or expiry_ms <= learn_ms:
            raise ValueError(f"need 0 <= learn_ms < expiry_ms, got {learn_ms}, {expiry_ms}")
        self.learn_ms = learn_ms
        self.expiry_ms = expiry_ms
        self.live_ms = 0
        self._last_answer: int | None = None
        self._since: dict[int, int] = {}  # raw partition -> live time it was first seen
        self._sources: dict[int, dict[str, _Source]] = {}
        self.expired: list[tuple[int, str, int]] = []  # (partition, source, claim): to report
        self.ended: list[tuple[int, str]] = []

    def copy(self) -> RawSources:
        return copy.deepcopy(self)

    def answered(self, now_ms: int) -> None:
        """Kafka answered at wall time `now_ms`: live time runs (a gap counts capped)."""
        if self._last_answer is not None:
            self.live_ms += max(0, min(now_ms - self._last_answer, _GAP_CAP_MS))
        self._last_answer = now_ms

    def stated(self, r: int, source: str, claim: int) -> None:
        """A source's claim read in raw partition r."""
        self._since.setdefault(r, self.live_ms)
        sources = self._sources.setdefault(r, {})
        if claim >= END_OF_TIME:
            if sources.pop(source, None) is not None:
                self.ended.append((r, source))
            return
        sources[source] = _Source(claim, self.live_ms)

    def bound(self, r: int, candidate: int) -> int | None:
        """What ingestion may claim for r, given `candidate` from the skew rule: at most the
        least live claim of its sources; None while r's sources are still being learned."""
        since = self._since.setdefault(r, self.live_ms)
        if self.live_ms - since < self.learn_ms:
            return None
        sources = self._sources.get(r, {})
        for name in [n for n, s in sources.items() if self.live_ms - s.seen_at > self.expiry_ms]:
            self.expired.append((r, name, sources.pop(name).claim))
        return min([candidate, *(s.claim for s in sources.values())])

    def count(self) -> int:
        """Distinct live sources known over all owned partitions."""
        return len({name for sources in self._sources.values() for name in sources})

    def revoked(self, partitions: Iterable[int]) -> None:
        for r in partitions:
            self._since.pop(r, None)
            self._sources.pop(r, None)

    def take_reports(self) -> tuple[list[tuple[int, str, int]], list[tuple[int, str]]]:
        """Expired and ended sources since the last call (for logs and metrics)."""
        out = (self.expired, self.ended)
        self.expired, self.ended = [], []
        return out
