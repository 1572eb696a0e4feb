"""The batch chain and aiokafka's rebalance callbacks share one lock; the chain must never wait
on the consumer while a rebalance runs, or neither side can move (seen as an instance that
froze, shutdown included, when a second one joined the group)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import TopicPartition

from services.common.codec import SchemaRegistry
from services.common.watermark import WatermarkCodec
from services.ingestion.rebalance import StreamRebalance
from services.ingestion.stream import IngestionStream, WatermarkOut
from services.ingestion.transform import TransformPool, TransformSpec
from services.ingestion.validation import Limits


class _Tail:
    def __init__(self) -> None:
        self.caught_up = 0

    async def catch_up(self) -> None:
        self.caught_up += 1


class _RebalancingConsumer:
    """aiokafka's getmany while a reassignment is in progress: it waits for the assignment,
    whatever the timeout."""

    def __init__(self) -> None:
        self.assigned = asyncio.Event()
        self.calls = 0

    async def getmany(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[Any, Any]:
        self.calls += 1
        await self.assigned.wait()
        return {}


def _stream(tail: _Tail) -> IngestionStream:
    return IngestionStream(
        consumer_factory=lambda listener: None,  # type: ignore[arg-type, return-value]
        producer=None,  # type: ignore[arg-type]
        tail=tail,  # type: ignore[arg-type]
        processor=None,  # type: ignore[arg-type]
        metrics=None,  # type: ignore[arg-type]
        group_id="g",
        max_batch=10,
        transforms=TransformPool(TransformSpec(b"s", 4096, Limits()), workers=0),
        watermarks=WatermarkOut(WatermarkCodec(SchemaRegistry.load()), "events", "i", 0.2, 1000),
    )


async def test_chain_holding_the_lock_does_not_fetch_once_a_revoke_is_pending() -> None:
    tail = _Tail()
    stream = _stream(tail)
    listener = StreamRebalance(stream)
    tps = [TopicPartition("raw", 0)]
    await listener.on_partitions_assigned(tps)
    assert not stream.rebalancing
    consumer = _RebalancingConsumer()

    async with stream.lock:  # the chain is mid-batch
        revoke = asyncio.create_task(listener.on_partitions_revoked(tps))
        await asyncio.sleep(0)
        assert not revoke.done()  # waits for the chain to let go of the lock
        # The chain's next fetch must come back at once instead of waiting for an assignment
        # that waits for the revoke that waits for this lock.
        following = await asyncio.wait_for(stream._fetch_now(consumer), 1.0)  # type: ignore[arg-type]
        assert following is None
        assert consumer.calls == 0
    await asyncio.wait_for(revoke, 1.0)
    assert stream.rebalancing

    await listener.on_partitions_assigned(tps)
    assert not stream.rebalancing
    assert tail.caught_up == 2
    consumer.assigned.set()
    assert await stream._fetch_now(consumer) == {}  # type: ignore[arg-type]
    assert consumer.calls == 1


async def test_no_fetch_under_the_lock_before_the_first_assignment() -> None:
    stream = _stream(_Tail())
    consumer = _RebalancingConsumer()
    assert await asyncio.wait_for(stream._fetch_now(consumer), 1.0) is None  # type: ignore[arg-type]
    assert consumer.calls == 0
