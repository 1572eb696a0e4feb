"""A producer that survives the broker going away: every send awaited, recovered or counted.

aiokafka's idempotent producer retries retriable errors by itself, but some states are fatal
for the client object: after a broker restart it can receive `OutOfOrderSequenceNumber`, its
sender task dies, and from then on every send fails with that same error (a transactional
producer likewise after `ProducerFenced`). `ResilientProducer` wraps the shared factory
`services.common.kafka.make_producer` and, on such an error, throws the client away, starts a
fresh one (new producer id, sequence numbers from zero) and sends the record again, with
jittered back-off, until the send's deadline. A record it could not write by then raises
`NotDelivered`, and is counted: `sent`, `unsent`, `recycled` are plain counters a service
exports as metrics.

A resend may write a record twice (the broker may have kept the first copy before the error):
that is at-least-once, and every topic written this way is read by something that
de-duplicates by id (raw events: ingestion by event_id).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    InvalidTopicError,
    KafkaConnectionError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordTooLargeError,
    TopicAuthorizationFailedError,
    UnsupportedVersionError,
)
from aiokafka.structs import RecordMetadata

from services.common.logging import get_logger, rate_limited

__all__ = ["NotDelivered", "ResilientProducer", "backoff_delays"]

_log = get_logger(__name__)

# Errors of the record itself: sending it again, with any client, fails the same way.
_RECORD_ERRORS: tuple[type[KafkaError], ...] = (
    MessageSizeTooLargeError,
    RecordTooLargeError,
    InvalidTopicError,
    TopicAuthorizationFailedError,
    UnsupportedVersionError,
)

Headers = Sequence[tuple[str, bytes]]


class NotDelivered(KafkaError):
    """A record the producer could not write before its deadline (counted as unsent)."""


def backoff_delays(
    first_s: float = 0.2, max_s: float = 5.0, rng: random.Random | None = None
) -> Callable[[int], float]:
    """Attempt n (0-based) → seconds to wait: exponential, capped, full jitter in [d/2, d]."""
    rng = rng or random.Random()

    def delay(n: int) -> float:
        d = min(max_s, first_s * (2 ** min(n, 30)))
        return rng.uniform(d / 2, d)

    return delay


class ResilientProducer:
    """An idempotent producer that replaces its client on fatal errors and counts what failed.

    `factory` makes a fresh (unstarted) AIOKafkaProducer; pass
    `lambda: make_producer(kafka, ...)`. `send` returns once Kafka acknowledged the record, or
    raises `NotDelivered` after `delivery_timeout_s` (per call: `timeout_s`).
    """

    def __init__(
        self,
        factory: Callable[[], AIOKafkaProducer],
        *,
        name: str = "producer",
        delivery_timeout_s: float = 60.0,
        start_timeout_s: float = 10.0,
        backoff: Callable[[int], float] | None = None,
    ) -> None:
        self._factory = factory
        self._name = name
        self._delivery_timeout_s = delivery_timeout_s
        self._start_timeout_s = start_timeout_s
        self._backoff = backoff or backoff_delays()
        self._producer: AIOKafkaProducer | None = None
        self._generation = 0
        self._lock = asyncio.Lock()
        self._closed = False
        self._next_start = 0.0
        self._failed_starts = 0
        self.sent = 0
        self.unsent = 0
        self.recycled = 0
        self._warn = rate_limited(_log, 10.0)

    async def start(self, timeout_s: float | None = None) -> None:
        """Start the first client now (fails like `AIOKafkaProducer.start` when no broker)."""
        await self._client(timeout_s or self._start_timeout_s)

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Flush and close; what is still pending after `timeout_s` fails its senders."""
        self._closed = True
        producer, self._producer = self._producer, None
        if producer is not None:
            await _stop_quietly(producer, timeout_s)

    async def send(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        headers: Headers | None = None,
        timeout_s: float | None = None,
        partition: int | None = None,
    ) -> RecordMetadata:
        """Write one record and wait for Kafka's acknowledgement (see the class docstring)."""
        deadline = time.monotonic() + (timeout_s or self._delivery_timeout_s)
        attempt = 0
        last: BaseException | None = None
        try:
            while not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    producer, generation = await self._client(left)
                except (TimeoutError, KafkaError, OSError) as exc:
                    last = exc
                else:
                    try:
                        fut = await asyncio.wait_for(
                            producer.send(
                                topic,
                                value,
                                key=key,
                                headers=list(headers or ()),
                                partition=partition,
                            ),
                            max(0.01, deadline - time.monotonic()),
                        )
                        meta = await asyncio.wait_for(fut, max(0.01, deadline - time.monotonic()))
                    except _RECORD_ERRORS as exc:
                        raise NotDelivered(f"{topic}: {exc!r}") from exc
                    except TimeoutError as exc:
                        last = exc  # still in the client's queue: Kafka unreachable so far
                        break
                    except KafkaError as exc:
                        last = exc
                        await self._recycle(generation, exc)
                    else:
                        self.sent += 1
                        return meta
                wait = min(self._backoff(attempt), deadline - time.monotonic())
                attempt += 1
                if wait > 0:
                    await asyncio.sleep(wait)
        except NotDelivered:
            self.unsent += 1
            raise
        except asyncio.CancelledError:
            self.unsent += 1
            raise
        self.unsent += 1
        self._warn.warning("kafka_send_failed", producer=self._name, topic=topic, error=repr(last))
        raise NotDelivered(f"{topic}: not acknowledged in time (last error: {last!r})")

    async def partitions_for(self, topic: str, timeout_s: float = 10.0) -> set[int]:
        """The topic's partitions, from the current client's metadata (starting one if needed)."""
        producer, _ = await self._client(timeout_s)
        return await asyncio.wait_for(producer.partitions_for(topic), timeout_s)

    async def _client(self, timeout_s: float) -> tuple[AIOKafkaProducer, int]:
        """The current client, starting one if needed (bounded by `timeout_s`, lock included).

        After a failed start the next one waits its back-off: sends in between fail at once
        (they wait out their own back-off), so an outage does not become a connect loop."""
        return await asyncio.wait_for(self._client_locked(), timeout_s)

    async def _client_locked(self) -> tuple[AIOKafkaProducer, int]:
        async with self._lock:
            if self._producer is None:
                wait = self._next_start - time.monotonic()
                if wait > 0:
                    raise KafkaConnectionError(f"{self._name}: reconnecting in {wait:.1f}s")
                producer = self._factory()
                try:
                    await producer.start()
                except BaseException:
                    self._failed_starts += 1
                    self._next_start = time.monotonic() + self._backoff(self._failed_starts)
                    await _stop_quietly(producer, 2.0)
                    raise
                self._failed_starts = 0
                self._producer = producer
                self._generation += 1
            return self._producer, self._generation

    async def _recycle(self, generation: int, exc: BaseException) -> None:
        """Throw away the client that failed (once, however many sends saw it fail)."""
        async with self._lock:
            if generation != self._generation or self._producer is None:
                return  # another send already replaced it
            producer, self._producer = self._producer, None
            self.recycled += 1
        self._warn.warning(
            "kafka_producer_recycled", producer=self._name, error=repr(exc), count=self.recycled
        )
        await _stop_quietly(producer, 2.0)


async def _stop_quietly(producer: AIOKafkaProducer, timeout_s: float) -> None:
    with contextlib.suppress(Exception, asyncio.CancelledError):
        await asyncio.wait_for(producer.stop(), timeout_s)


def default_factory(kafka: Any, **overrides: Any) -> Callable[[], AIOKafkaProducer]:
    """`make_producer(kafka, **overrides)` as a factory (imported late: no import cycle)."""
    from services.common.kafka import make_producer

    return lambda: make_producer(kafka, **overrides)
