"""The paced metadata refresh: failed refreshes wait (growing, jittered, capped), a success
resets; and the aiokafka internals it wraps are still where it expects them."""

from __future__ import annotations

import asyncio
import inspect
import random
import time

from aiokafka import AIOKafkaProducer
from aiokafka.client import AIOKafkaClient
from aiokafka.producer.sender import Sender

from services.common.kafka import make_producer
from services.common.kafka_pacing import pace_metadata_updates
from services.common.settings import KafkaSettings


class _Client:
    def __init__(self, answers: list[bool]) -> None:
        self.answers = answers
        self.calls = 0

    async def _metadata_update(self, cluster_metadata: object, topics: object) -> bool:
        self.calls += 1
        return self.answers.pop(0)


async def test_failed_refreshes_wait_longer_each_time_and_a_success_resets() -> None:
    client = _Client([False, False, False, True, False])
    pace_metadata_updates(client, first_s=0.02, max_s=0.05, rng=random.Random(1))
    took = []
    for _ in range(5):
        t0 = time.monotonic()
        await client._metadata_update(None, set())
        took.append(time.monotonic() - t0)
    assert client.calls == 5
    assert 0.01 <= took[0] < took[1] + 0.02  # 0.01-0.02, then 0.02-0.04
    assert 0.025 <= took[2] <= 0.2  # capped at max_s (0.05), jittered in [max/2, max]
    assert took[3] < 0.01  # success: reports at once
    assert 0.01 <= took[4] <= 0.1  # and the back-off starts over


async def test_a_refresh_storm_is_paced() -> None:
    """What aiokafka's sender does with an unknown leader: ask again as soon as told no."""
    client = _Client([False] * 10_000)
    pace_metadata_updates(client, first_s=0.01, max_s=0.05)
    deadline = time.monotonic() + 0.5

    async def spin() -> None:
        while time.monotonic() < deadline:
            await client._metadata_update(None, set())

    await asyncio.wait_for(spin(), 5)
    assert client.calls <= 20  # unpaced: thousands in half a second


def test_the_wrapped_internals_are_where_the_adapter_expects_them() -> None:
    """Fails on an aiokafka upgrade that renames the refresh or stops the sender from using it:
    re-check kafka_pacing.py against the new client then."""
    params = list(inspect.signature(AIOKafkaClient._metadata_update).parameters)
    assert params == ["self", "cluster_metadata", "topics"]
    assert "force_metadata_update" in inspect.getsource(Sender._sender_routine)
    assert "_metadata_update(self.cluster" in inspect.getsource(AIOKafkaClient._md_synchronizer)


async def test_every_producer_of_the_factory_is_paced() -> None:
    producer = make_producer(KafkaSettings(bootstrap_servers="127.0.0.1:1"))
    assert isinstance(producer, AIOKafkaProducer)
    assert producer.client._metadata_update.__qualname__.startswith("pace_metadata_updates")
    await producer.stop()
