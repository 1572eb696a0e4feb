"""Ingestion's one summary line per interval: what it consumed, forwarded, dead-lettered,
dropped and de-duplicated since the last line."""

from __future__ import annotations

import time
from collections import Counter

import structlog

from services.ingestion.pipeline import BatchResult

__all__ = ["Summary"]

_log = structlog.get_logger(__name__)
SUMMARY_EVERY_S = 10.0


class Summary:
    def __init__(self, every_s: float = SUMMARY_EVERY_S) -> None:
        self._every_s = every_s
        self._totals: Counter[str] = Counter()
        self._last = time.monotonic()

    def add(self, result: BatchResult) -> None:
        t = self._totals
        t["consumed"] += result.consumed
        t["forwarded"] += result.forwarded
        t["duplicates"] += result.duplicates
        t.update({f"dead_lettered.{k}": v for k, v in result.dead_letters.items()})
        t.update({f"dropped.{k}": v for k, v in result.dropped.items()})

    def maybe_log(self, dedup_entries: int, *, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self._last < self._every_s:
            return
        if self._totals or force:
            _log.info(
                "ingestion_summary",
                **dict(sorted(self._totals.items())),
                dedup_entries=dedup_entries,
                seconds=round(now - self._last, 1),
            )
        self._totals = Counter()
        self._last = now
