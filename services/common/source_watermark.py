"""What a writer of admuse.events.raw states about its own events: source watermarks.

A live source (the simulator, ingestion's HTTP collector, an app that speaks Kafka) knows
which of its events it has stamped but not yet seen acknowledged by Kafka: those it still
holds, sends or retries through a broker restart. It states in the raw topic, every
`SOURCE_INTERVAL_MS` at most, a Watermark record (clock `ingestion`, the live clock; producer:
the source's stable name; one input) into *every* raw partition: "every event of mine with
``occurred_at <= W`` that belongs in this partition comes before this record". With the oldest
held event at ``o`` and the claim computed at wall time ``t``, ``W = min(t - lag, o) - 1``:
an event acknowledged before ``t`` was appended before the record; one held at ``t`` occurred
after ``W``; one stamped after ``t`` too. A collector that refused events (503) cannot see the
app's copy any more: it holds the refused events' times for a resend horizon instead
(`HeldEvents.refused`). At a clean end the source states `END_OF_TIME` (end of source).

Ingestion reads these claims in-band and lets its own claim for a raw partition follow the
least of its live sources' (services/ingestion/raw_sources.py), so a click held by its
source through a broker stop holds its decision's window open until it is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from itertools import count

from aiokafka.errors import KafkaError

from services.common.logging import get_logger, rate_limited
from services.common.producer import ResilientProducer
from services.common.watermark import END_OF_TIME, LIVE, WatermarkCodec

__all__ = ["SOURCE_INTERVAL_MS", "HeldEvents", "SourceWatermarks"]

SOURCE_INTERVAL_MS = 500  # contract: a live source states its claim at least this often

_log = get_logger(__name__)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class HeldEvents:
    """Event times a source holds: stamped and not yet acknowledged, or refused and expected
    back from the app within a horizon. `claim` is what the source may state now."""

    def __init__(self) -> None:
        self._pending: dict[int, int] = {}  # token -> occurred_at ms
        self._times: Counter[int] = Counter()
        self._refused: dict[int, int] = {}  # occurred_at ms -> wall ms until which it holds
        self._tokens = count()

    def hold(self, occurred_ms: int) -> int:
        """An event stamped `occurred_ms` is on its way; returns the token to `release`."""
        token = next(self._tokens)
        self._pending[token] = occurred_ms
        self._times[occurred_ms] += 1
        return token

    def release(self, token: int) -> None:
        """The event is acknowledged (or given up and counted): it is held no longer."""
        occurred = self._pending.pop(token, None)
        if occurred is None:
            return
        self._times[occurred] -= 1
        if self._times[occurred] <= 0:
            del self._times[occurred]

    def refused(self, occurred_ms: int, until_ms: int) -> None:
        """An event was refused to its app, which resends it by wall time `until_ms`."""
        self._refused[occurred_ms] = max(self._refused.get(occurred_ms, until_ms), until_ms)

    @property
    def held(self) -> int:
        return len(self._pending) + len(self._refused)

    def claim(self, now_ms: int, lag_ms: int = 0) -> int:
        """The claim due at wall time `now_ms`: below every held event, at most now - lag - 1."""
        for occurred in [o for o, until in self._refused.items() if until <= now_ms]:
            del self._refused[occurred]
        oldest = min(self._times, default=now_ms - lag_ms)
        if self._refused:
            oldest = min(oldest, min(self._refused))
        return min(now_ms - lag_ms, oldest) - 1


class SourceWatermarks:
    """States a live source's claims into every partition of the raw topic, every
    `interval_s`, through the source's own producer; `END_OF_TIME` at `close(end=True)`."""

    def __init__(
        self,
        producer: ResilientProducer,
        *,
        topic: str,
        codec: WatermarkCodec,
        name: str,
        held: HeldEvents,
        lag_ms: int = 0,
        interval_s: float = SOURCE_INTERVAL_MS / 1000,
    ) -> None:
        if interval_s * 1000 > SOURCE_INTERVAL_MS:
            raise ValueError(f"interval_s must be <= {SOURCE_INTERVAL_MS / 1000}, got {interval_s}")
        self._producer = producer
        self._topic = topic
        self._codec = codec
        self.name = name
        self.held = held
        self._lag_ms = lag_ms
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.stated = 0  # claims written into every partition
        self.failed = 0  # claims not written (counted; the next one replaces them)
        self.last_claim_ms: int | None = None
        self._warn = rate_limited(_log, 10.0)

    def start(self) -> None:
        """Start stating claims (again calls do nothing)."""
        if self._task is not None or self._closed:
            return
        self._task = asyncio.create_task(self._run(), name=f"source-watermarks-{self.name}")

    async def close(self, *, end: bool, timeout_s: float = 10.0) -> None:
        """Stop stating claims; with `end`, state the end of this source (nothing more comes)."""
        self._closed = True
        if self._task is None:
            return  # never started: it stated nothing, so it has nothing to end
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        if end:
            await self._state(END_OF_TIME, timeout_s)

    async def _run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self._state(self.held.claim(_now_ms(), self._lag_ms), 4 * self._interval_s)
            except Exception as exc:  # a bug must not end the claims silently: count, go on
                self.failed += 1
                self._warn.error(
                    "source_watermark_failed",
                    source=self.name,
                    error=repr(exc),
                    failed=self.failed,
                    exc_info=True,
                )
            await asyncio.sleep(max(0.0, self._interval_s - (time.monotonic() - started)))

    async def _state(self, claim: int, timeout_s: float) -> None:
        # the claim is computed before anything is sent: what is appended later comes after
        try:
            partitions = await self._producer.partitions_for(self._topic, timeout_s)
            value = self._codec.encode(self.name, 1, {0: claim}, _now_ms(), source=LIVE)
            sends = [
                self._producer.send(
                    self._topic, value, key=self.name.encode(), partition=p, timeout_s=timeout_s
                )
                for p in sorted(partitions)
            ]
            outcomes = await asyncio.gather(*sends, return_exceptions=True)
            failed = next((o for o in outcomes if isinstance(o, BaseException)), None)
            if failed is not None:
                raise failed
        except (KafkaError, TimeoutError, OSError) as exc:
            self.failed += 1
            self._warn.warning(
                "source_watermark_not_written",
                source=self.name,
                error=repr(exc),
                failed=self.failed,
            )
            return
        self.stated += 1
        self.last_claim_ms = claim
