"""ResilientProducer: fatal client states lead to a fresh client and a resend; what cannot be
written by the deadline is counted as unsent, never lost silently.

The clients here are small stand-ins for AIOKafkaProducer's start/send/stop, programmed to
fail the way aiokafka does after a broker restart (the sender dies with
OutOfOrderSequenceNumber and every later send raises it); the real broker case runs in the
fault suite (`make chaos`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    MessageSizeTooLargeError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
)
from aiokafka.structs import RecordMetadata

from services.common.producer import NotDelivered, ResilientProducer, backoff_delays


class Client:
    """One client: `fail` is what its sends raise (None: acknowledged), `hang` never answers."""

    def __init__(self, log: list[Client], fail: BaseException | None, hang: bool) -> None:
        self.fail, self.hang = fail, hang
        self.started = self.stopped = False
        self.written: list[bytes] = []
        log.append(self)

    async def start(self) -> None:
        if isinstance(self.fail, KafkaConnectionError):
            raise self.fail
        self.started = True

    async def send(self, topic: str, value: bytes, **_kw: Any) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.hang:
            return fut
        if self.fail is not None:
            fut.set_exception(self.fail)
        else:
            self.written.append(value)
            fut.set_result(RecordMetadata(topic, 0, None, len(self.written) - 1, -1, 0, 0))
        return fut

    async def stop(self) -> None:
        self.stopped = True


def factory(*behaviours: tuple[BaseException | None, bool]) -> tuple[Any, list[Client]]:
    """Clients made in turn with the given (fail, hang); the last one repeats."""
    made: list[Client] = []

    def make() -> Any:
        fail, hang = behaviours[min(len(made), len(behaviours) - 1)]
        return Client(made, fail, hang)

    return make, made


def fast() -> Any:
    return backoff_delays(0.001, 0.01)


@pytest.mark.parametrize("fatal", [OutOfOrderSequenceNumber(), ProducerFenced()])
async def test_fatal_state_gets_a_fresh_client_and_the_record_is_resent(fatal: Exception) -> None:
    make, made = factory((fatal, False), (None, False))
    producer = ResilientProducer(make, backoff=fast())
    await producer.start()
    meta = await producer.send("t", b"v1", key=b"k")
    assert meta.offset == 0
    assert len(made) == 2 and made[0].stopped and made[1].written == [b"v1"]
    assert (producer.sent, producer.unsent, producer.recycled) == (1, 0, 1)
    await producer.send("t", b"v2")
    assert len(made) == 2, "a healthy client is kept"
    await producer.stop()
    assert made[1].stopped


async def test_many_sends_seeing_one_failure_replace_the_client_once() -> None:
    make, made = factory((OutOfOrderSequenceNumber(), False), (None, False))
    producer = ResilientProducer(make, backoff=fast())
    await producer.start()
    await asyncio.gather(*(producer.send("t", str(i).encode()) for i in range(20)))
    assert producer.recycled == 1 and len(made) == 2
    assert sorted(made[1].written) == sorted(str(i).encode() for i in range(20))
    assert producer.sent == 20 and producer.unsent == 0


async def test_a_send_that_is_never_acknowledged_is_counted_unsent_at_its_deadline() -> None:
    make, _made = factory((None, True))
    producer = ResilientProducer(make, backoff=fast())
    await producer.start()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    with pytest.raises(NotDelivered):
        await producer.send("t", b"v", timeout_s=0.3)
    assert loop.time() - t0 < 1.0
    assert (producer.sent, producer.unsent) == (0, 1)


async def test_no_broker_fails_within_the_deadline_without_a_connect_loop() -> None:
    make, made = factory((KafkaConnectionError(), False))
    producer = ResilientProducer(make, backoff=backoff_delays(0.2, 0.2))
    with pytest.raises(KafkaConnectionError):
        await producer.start()
    results = await asyncio.gather(
        *(producer.send("t", b"v", timeout_s=0.5) for _ in range(50)), return_exceptions=True
    )
    assert all(isinstance(r, NotDelivered) for r in results)
    assert producer.unsent == 50
    # one start per back-off period, not one per send and retry
    assert len(made) <= 5


async def test_a_record_kafka_refuses_is_not_retried() -> None:
    make, made = factory((MessageSizeTooLargeError(), False))
    producer = ResilientProducer(make, backoff=fast())
    await producer.start()
    with pytest.raises(NotDelivered):
        await producer.send("t", b"v" * 10)
    assert len(made) == 1 and producer.recycled == 0 and producer.unsent == 1


def test_backoff_is_capped_and_jittered() -> None:
    import random

    delay = backoff_delays(0.2, 5.0, random.Random(1))
    values = [delay(n) for n in range(12)]
    assert all(0.1 <= v <= 5.0 for v in values)
    assert max(values[8:]) > 2.5 and len(set(values)) == len(values)
