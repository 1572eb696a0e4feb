"""The per-record work of ingestion, and the worker processes that can do it.

`Transform` turns raw record values into outcomes — decode, validate, consent, pseudonymize,
encode — with no state the batch loop needs back: the same values always give the same
outcomes. That makes it safe to run in other processes. `TransformPool` does so: the service's
own process keeps Kafka (fetching, transactions, de-duplication, dead letters) and the CPU-heavy
transform runs in worker processes, a batch cut into one slice per worker. On a 2-core machine
that takes ingestion from one core to two (bench/RESULTS.md). With `workers=0` everything runs
in-process, in slices between turns of the event loop.

Workers are spawned (not forked: the parent runs an event loop and client threads), get the
pseudonym secret through their start-up arguments (never the environment or a file), ignore
SIGINT/SIGTERM (a Ctrl-C reaches the whole process group; the service's own shutdown stops
them after the batch in hand), and exit when the service's process is gone — kill -9 included
— so no orphan outlives a crash. A worker
that dies (OOM killer, a crash in a C extension) breaks the pool: the batch in hand is then
transformed in-process, the pool is rebuilt and the error logged. No outcome is lost: nothing
of a batch is produced before its transform has returned.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

import structlog

from services.common.codec import CodecError, RecordCodec, SchemaRegistry
from services.common.logging import configure_logging
from services.common.privacy import Pseudonymizer
from services.ingestion.decoding import decode_raw
from services.ingestion.encoding import AdEventEncoder
from services.ingestion.rejection import Rejection
from services.ingestion.validation import Limits, consent_verdict, validate_event

__all__ = ["Forward", "Outcome", "Transform", "TransformPool", "TransformSpec", "Transformed"]

_PSEUDONYM_CACHE = 100_000  # user_id → pseudonym, least recently used go first
_SLICE = 250  # records transformed in-process between two turns of the event loop
_PARENT_POLL_S = 0.5
_log = structlog.get_logger(__name__)

# One outcome per raw value: a Forward, a Rejection (dead letter), or a consent drop reason.
Forward = tuple[str, bytes, bytes]  # event_id, key (the pseudonym), AdEvent v2 value
Outcome = Forward | Rejection | str


@dataclass(slots=True)
class Transformed:
    outcomes: list[Outcome]
    formats: Counter[str]  # decoded records by wire format ("json", "avro")


@dataclass(frozen=True, slots=True)
class TransformSpec:
    """Everything a worker needs to build its `Transform`; small and picklable."""

    secret: bytes
    max_event_bytes: int
    limits: Limits
    event_schema: tuple[str, int | None] = ("AdEvent", None)  # name, version (None: newest)

    def __repr__(self) -> str:  # the secret never reaches a log line or a traceback
        return f"TransformSpec(max_event_bytes={self.max_event_bytes}, limits={self.limits})"


class Transform:
    """Decode, validate, enforce consent, pseudonymize, encode: raw values → outcomes."""

    def __init__(self, spec: TransformSpec, event_codec: RecordCodec | None = None) -> None:
        name, version = spec.event_schema
        self._codec = event_codec or SchemaRegistry.load().codec(name, version)
        self._max_event_bytes = spec.max_event_bytes
        self._limits = spec.limits
        self._encoder = AdEventEncoder(self._codec)
        # Users recur: remember their pseudonyms (in memory only, like the secret itself).
        self.pseudonymize = Pseudonymizer(spec.secret, cache=_PSEUDONYM_CACHE).pseudonymize

    def __call__(self, values: Sequence[bytes | None], now_ms: int) -> Transformed:
        done = Transformed([], Counter())
        for value in values:
            try:
                outcome = self._one(value, now_ms, done.formats)
            except Exception as exc:  # a bug must not stop the stream: keep the record
                _log.exception(
                    "ingestion_failed_on_a_record", detail="dead-lettered as internal_error"
                )
                outcome = Rejection("internal_error", f"ingestion failed: {type(exc).__name__}")
            done.outcomes.append(outcome)
        return done

    def _one(self, value: bytes | None, now_ms: int, formats: Counter[str]) -> Outcome:
        decoded = decode_raw(value, codec=self._codec, max_bytes=self._max_event_bytes)
        if isinstance(decoded, Rejection):
            return decoded
        formats[decoded.fmt] += 1
        checked = validate_event(decoded.value, now_ms=now_ms, limits=self._limits)
        if isinstance(checked, Rejection):
            return checked
        fields: dict[str, Any] = checked.fields
        drop = consent_verdict(fields["consent"])
        if drop is not None:
            return drop
        fields = dict(fields)
        pseudonym = self.pseudonymize(fields["user_id"])
        fields["user_id"] = pseudonym
        fields["ingested_at"] = now_ms
        try:
            encoded = self._encoder.encode(fields)
        except CodecError as exc:
            return Rejection(exc.reason, f"valid event does not encode as AdEvent: {exc}")
        return (fields["event_id"], pseudonym.encode(), encoded)


# -- worker processes ------------------------------------------------------------------------

_worker: Transform | None = None


def _exit_with_parent(parent: int) -> None:
    while True:
        time.sleep(_PARENT_POLL_S)
        if os.getppid() != parent:  # re-parented: the service died (kill -9 included)
            os._exit(0)


def _start_worker(spec: TransformSpec, parent: int, log_level: str, log_format: str) -> None:
    global _worker
    # Ctrl-C in a terminal signals the whole process group: the service stops cleanly and
    # its workers with it (pool shutdown, or the parent watch below), not mid-batch.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    configure_logging(log_level, log_format, service="ingestion")
    _worker = Transform(spec)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _run_worker(values: list[bytes | None], now_ms: int) -> Transformed:
    assert _worker is not None, "worker not started"
    return _worker(values, now_ms)


def _warm_up() -> None:
    time.sleep(0.05)


class TransformPool:
    """Transform batches in `workers` worker processes (0: in this process)."""

    def __init__(
        self,
        spec: TransformSpec,
        workers: int,
        *,
        log_level: str = "INFO",
        log_format: str = "json",
        on_failure: Callable[[], None] = lambda: None,
    ) -> None:
        """`on_failure`: called when a worker died (the batch is then done in-process)."""
        self._spec = spec
        self.workers = workers
        self._log_args = (log_level, log_format)
        self._local = Transform(spec)  # in-process mode, and the fallback of a broken pool
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self.pids: list[int] = []
        self.rebuilt = 0
        self._on_failure = on_failure

    async def start(self) -> None:
        """Spawn the workers and wait until each has built its transform."""
        if self.workers == 0:
            return
        self._pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(self._spec, os.getpid(), *self._log_args),
        )
        before = {child.pid for child in multiprocessing.active_children()}
        # Each call waits a little, so each of these calls gets a worker process of its own:
        # the pool spawns on demand, only while none is idle. All are up when this returns.
        loop = asyncio.get_running_loop()
        await asyncio.gather(
            *(loop.run_in_executor(self._pool, _warm_up) for _ in range(self.workers))
        )
        self.pids = sorted(
            child.pid
            for child in multiprocessing.active_children()
            if child.pid is not None and child.pid not in before
        )
        _log.info("transform_workers_running", workers=self.workers, pids=self.pids)

    def stop(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    async def run(self, values: list[bytes | None], now_ms: int) -> Transformed:
        """The outcomes of `values`, in order."""
        if self._pool is None:
            return await self._run_here(values, now_ms)
        loop = asyncio.get_running_loop()
        size = max(1, -(-len(values) // self.workers))  # ceil; a batch of watermarks only: 0
        slices = [values[i : i + size] for i in range(0, len(values), size)] or [[]]
        try:
            parts = await asyncio.gather(
                *(loop.run_in_executor(self._pool, _run_worker, part, now_ms) for part in slices)
            )
        except BrokenProcessPool as exc:
            self.rebuilt += 1
            self._on_failure()
            _log.error(
                "transform_worker_died",
                detail="this batch is transformed in-process and the workers restarted",
                error=repr(exc),
            )
            self.stop()
            result = await self._run_here(values, now_ms)
            await self.start()
            return result
        done = Transformed([], Counter())
        for part in parts:
            done.outcomes.extend(part.outcomes)
            done.formats.update(part.formats)
        return done

    async def _run_here(self, values: list[bytes | None], now_ms: int) -> Transformed:
        """In this process, yielding to the event loop between slices so the producer's
        sender moves a committing transaction along (acks, then EndTxn) meanwhile."""
        done = Transformed([], Counter())
        for i in range(0, len(values), _SLICE):
            if i:
                await asyncio.sleep(0)
            part = self._local(values[i : i + _SLICE], now_ms)
            done.outcomes.extend(part.outcomes)
            done.formats.update(part.formats)
        return done
