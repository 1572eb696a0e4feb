"""The decision log: every Decision goes to admuse.decisions, batched and off the request path.

`submit` never blocks and never fails for Kafka's sake. Decisions wait in a bounded memory
queue; when it is full (Kafka slow or away) they are appended to a local spool file instead,
and while the spool holds anything every new decision goes there too, so the order of
submission is the order of sending. A sender task drains memory first, then the spool, and
records how far it got in a position file beside the spool; on close, whatever could not be
sent is written to the spool, and the next start replays it before anything new.

No resends on a slow broker: a batch whose acknowledgements are late is waited on again (the
idempotent producer retries inside; a fresh send would write a second copy). A record is sent
again only after its producer reported it failed, or, at close, when its fate was still
unknown; those are the only ways to a duplicate, and readers still de-duplicate by decision_id.
`submit(..., acked=True)` returns a future that resolves once Kafka acknowledged the record
(or fails at close): inference answers Decide after it when `ADMUSE_INFERENCE_DECISION_ACK`
is on, so every answered Decide has its record even if the process is then SIGKILLed. With
it off, a SIGKILL loses the decisions still in memory: at most those of the last linger plus
one send (docs/contracts.md "Decision log").

Spool frame: 4-byte big-endian key length, 4-byte value length, key, value. A torn last
frame (crash mid-write) is dropped on replay, with a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Mapping
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from services.common.codec import RecordCodec
from services.common.logging import get_logger
from services.inference.decision_spool import DecisionSpool, Record
from services.inference.decision_watermarks import DecisionWatermarks
from services.inference.metrics import Metrics

__all__ = ["DecisionLog", "NotLogged"]

_log = get_logger(__name__)


class NotLogged(RuntimeError):
    """A decision the log could not get acknowledged (it stays spooled for the next start)."""


class _Batch:
    """Records taken for sending, and the producer's delivery future of each (None: to send)."""

    def __init__(self, records: list[Record], from_spool: bool, new_pos: int) -> None:
        self.records = records
        self.from_spool = from_spool
        self.new_pos = new_pos
        self.futures: list[asyncio.Future[Any] | None] = [None] * len(records)

    def delivered(self, i: int) -> bool:
        f = self.futures[i]
        return f is not None and f.done() and not f.cancelled() and f.exception() is None

    def unsettled(self) -> list[asyncio.Future[Any]]:
        return [f for f in self.futures if f is not None and not f.done()]


class DecisionLog:
    """Batched, non-blocking writer of Decision records with a bounded buffer and a spool."""

    def __init__(
        self,
        producer_factory: Callable[[], AIOKafkaProducer],
        topic: str,
        codec: RecordCodec,
        spool_path: Path,
        metrics: Metrics,
        *,
        buffer_size: int = 10_000,
        batch_size: int = 500,
        linger_s: float = 0.0,
        send_timeout_s: float = 15.0,
        start_timeout_s: float = 15.0,
        retry_backoff_s: tuple[float, float] = (0.2, 5.0),
        watermarks: DecisionWatermarks | None = None,
    ) -> None:
        self._factory = producer_factory
        self._topic = topic
        self._codec = codec
        self._spool = DecisionSpool(spool_path, metrics)
        self._metrics = metrics
        self._buffer_size = buffer_size
        self._batch_size = batch_size
        self._linger_s = linger_s
        self._send_timeout_s = send_timeout_s
        self._start_timeout_s = start_timeout_s
        self._backoff = retry_backoff_s
        self._watermarks = watermarks
        self._mem: deque[Record] = deque()
        self._inflight: _Batch | None = None
        self._waiters: dict[bytes, asyncio.Future[None]] = {}
        self._producer: AIOKafkaProducer | None = None
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    # -- request path -------------------------------------------------------------------

    def submit(
        self, decision: Mapping[str, Any], *, acked: bool = False
    ) -> asyncio.Future[None] | None:
        """Queue one Decision (a dict fitting the schema). Raises only `EncodeError`.

        With `acked`, returns a future that resolves when Kafka acknowledged the record and
        fails with `NotLogged` when the log closes before that."""
        value = self._codec.encode(decision)
        record = (str(decision["decision_id"]).encode(), value)
        waiter: asyncio.Future[None] | None = None
        if acked:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters[record[0]] = waiter
        if self._spool.is_open or len(self._mem) >= self._buffer_size:
            try:
                self._spool.append([record])
                self._wakeup.set()
                return waiter
            except OSError as exc:
                # Disk full or unwritable: keep it in memory past the bound rather than fail
                # the request or lose the decision (it may then be sent before older spooled
                # ones).
                self._metrics.decision_spool_errors.inc()
                _log.error("decision_spool_unwritable", detail="holding in memory", error=repr(exc),
                           path=str(self._spool.path), in_memory=len(self._mem) + 1)  # fmt: skip
        self._mem.append(record)
        self._metrics.decisions_buffered.set(len(self._mem))
        self._wakeup.set()
        return waiter

    @property
    def pending(self) -> int:
        """Decisions not yet acknowledged by Kafka (memory plus spool)."""
        return len(self._mem) + self._spool.count

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        self._spool.path.parent.mkdir(parents=True, exist_ok=True)
        if self._spool.path.exists():
            self._spool.open()
            if self._spool.count:
                _log.info(
                    "decision_spool_found",
                    detail="replaying",
                    path=str(self._spool.path),
                    decisions=self._spool.count,
                )
                self._wakeup.set()
            else:
                self._spool.remove()
        self._task = asyncio.create_task(self._run(), name="decision-log")

    async def close(self, flush_timeout_s: float = 5.0) -> None:
        """Send what can be sent within the deadline; spool the rest for the next start."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, flush_timeout_s)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        await self._drop_producer()
        self._settle_inflight()
        if self._mem:
            try:
                self._spool.put_in_front(list(self._mem))  # memory is older than the spool
            except OSError as exc:
                _log.error("decisions_lost", detail="they could not be saved to the spool",
                           decisions=len(self._mem), path=str(self._spool.path),
                           error=repr(exc))  # fmt: skip
            self._mem.clear()
            self._metrics.decisions_buffered.set(0)
        self._spool.close()
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_exception(NotLogged("decision not acknowledged before shutdown"))
        self._waiters.clear()
        if self.pending:
            _log.warning(
                "decisions_kept_in_spool",
                detail="for the next start",
                path=str(self._spool.path),
                decisions=self.pending,
            )

    # -- sender ---------------------------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        while True:
            if self._inflight is None:
                records, from_spool, new_pos = self._next_batch()
                if not records:
                    if self._closing:
                        return
                    self._wakeup.clear()
                    await self._idle()
                    continue
                self._inflight = _Batch(records, from_spool, new_pos)
            batch = self._inflight
            if await self._send(batch):
                failures = 0
                self._inflight = None
                self._commit(len(batch.records), batch.from_spool, batch.new_pos)
                await self._watermark()
                if len(batch.records) < self._batch_size:
                    await self._linger()
                continue
            failures += 1
            self._metrics.decision_send_failures.inc()
            if self._closing:
                return
            delay = min(self._backoff[1], self._backoff[0] * 2 ** min(failures, 10))
            await asyncio.sleep(delay)

    async def _idle(self) -> None:
        """Wait for decisions; with watermarks, state one every interval meanwhile."""
        if self._watermarks is None:
            await self._wakeup.wait()
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self._watermarks.interval_s)
            await self._watermark()
        if self._wakeup.is_set():
            await self._linger()

    async def _watermark(self) -> None:
        wm = self._watermarks
        if wm is None or self._closing or not wm.due():
            return
        oldest = self._oldest_pending_ms()
        now = int(time.time() * 1000)
        claim = (now if oldest is None else min(oldest, now)) - 1
        try:
            producer = await self._ensure_producer()
            await asyncio.wait_for(wm.emit(producer, claim), self._send_timeout_s)
        except Exception as exc:
            self._metrics.decision_watermark_failures.inc()
            _log.warning("decision_watermark_not_written", detail="next interval tries again",
                         claim_ms=claim, error=repr(exc))  # fmt: skip

    def _oldest_pending_ms(self) -> int | None:
        """decided_at of the oldest decision not yet acknowledged (memory holds the oldest,
        in flight included, unless the spool was unwritable; the spool's head otherwise)."""
        heads = [self._mem[0]] if self._mem else []
        if self._spool.count:
            heads += self._spool.read(1)[0]
        if not heads:
            return None
        return min(_decided_ms(self._codec.decode(v)["decided_at"]) for _k, v in heads)

    async def _linger(self) -> None:
        """Let decisions gather before the next send, so one produce request carries many
        instead of one or two (at 500 decisions/s: ~40 requests/s instead of ~200, less CPU
        for this service and the broker). Skipped when closing."""
        if self._linger_s and not self._closing:
            await asyncio.sleep(self._linger_s)

    def _next_batch(self) -> tuple[list[Record], bool, int]:
        if self._mem:
            return list(islice(self._mem, self._batch_size)), False, 0
        if self._spool.count:
            batch, pos = self._spool.read(self._batch_size)
            return batch, True, pos
        return [], False, 0

    async def _send(self, batch: _Batch) -> bool:
        """Send the records of `batch` not yet handed to a producer, then wait (bounded) for
        every acknowledgement. True when all are delivered. Records whose send failed are
        handed over again next time; late ones are only waited on again."""
        try:
            producer = await self._ensure_producer()
            await asyncio.wait_for(self._dispatch(producer, batch), self._send_timeout_s)
            unsettled = batch.unsettled()
            if unsettled:
                await asyncio.wait(unsettled, timeout=self._send_timeout_s)
        except Exception as exc:
            _log.warning("decision_batch_not_sent", detail="will retry",
                         decisions=len(batch.records), pending=self.pending,
                         error=repr(exc))  # fmt: skip
        failed = [i for i, f in enumerate(batch.futures) if f is None or f.done()]
        failed = [i for i in failed if not batch.delivered(i)]
        if batch.unsettled():
            # Late acknowledgements: the producer still owns these records and retries them
            # itself (idempotently); sending them again would write second copies.
            _log.warning("decision_batch_not_acknowledged_yet", detail="waiting on the same sends",
                         decisions=len(batch.unsettled()), pending=self.pending)  # fmt: skip
            return False
        if not failed:
            return True
        for i in failed:
            batch.futures[i] = None
        await self._drop_producer()  # nothing of this batch in flight: safe to start afresh
        return False

    async def _dispatch(self, producer: AIOKafkaProducer, batch: _Batch) -> None:
        for i, (k, v) in enumerate(batch.records):
            if batch.futures[i] is None:
                fut = await producer.send(self._topic, value=v, key=k)
                fut.add_done_callback(lambda f, key=k: self._acknowledged(key, f))
                batch.futures[i] = fut

    def _acknowledged(self, key: bytes, fut: asyncio.Future[Any]) -> None:
        if fut.cancelled() or fut.exception() is not None:
            return
        waiter = self._waiters.pop(key, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _settle_inflight(self) -> None:
        """At close: count what the batch got delivered; what did not (or whose fate is
        unknown) goes back to the front of memory, to be spooled in order."""
        batch, self._inflight = self._inflight, None
        if batch is None:
            return
        rest = [r for i, r in enumerate(batch.records) if not batch.delivered(i)]
        self._commit(len(batch.records), batch.from_spool, batch.new_pos,
                     sent=len(batch.records) - len(rest))  # fmt: skip
        self._mem.extendleft(reversed(rest))
        self._metrics.decisions_buffered.set(len(self._mem))

    def _commit(self, n: int, from_spool: bool, new_pos: int, sent: int | None = None) -> None:
        self._metrics.decisions_sent.inc(n if sent is None else sent)
        if not from_spool:
            for _ in range(n):
                self._mem.popleft()
            self._metrics.decisions_buffered.set(len(self._mem))
            return
        self._spool.commit(n, new_pos)

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = self._factory()
            try:
                await asyncio.wait_for(producer.start(), self._start_timeout_s)
            except BaseException:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(producer.stop(), 2.0)
                raise
            self._producer = producer
        return self._producer

    async def _drop_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), 2.0)


def _decided_ms(value: Any) -> int:
    return round(value.timestamp() * 1000) if isinstance(value, datetime) else int(value)
