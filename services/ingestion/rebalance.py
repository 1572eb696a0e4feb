"""The ingestion stream's rebalance hooks: finish the batch in flight before partitions go,
catch the dedup window up before new ones run."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol

import structlog
from aiokafka import ConsumerRebalanceListener, TopicPartition

__all__ = ["StreamRebalance"]

_log = structlog.get_logger("services.ingestion.stream")


class _Stream(Protocol):
    """What the hooks touch of the ingestion stream (stream.py)."""

    rebalancing: bool
    lock: asyncio.Lock
    generation: int
    clock: Any
    tail: Any
    ready: asyncio.Event


class StreamRebalance(ConsumerRebalanceListener):
    """Finish the batch in flight before partitions go; catch up dedup before new ones run."""

    def __init__(self, stream: _Stream) -> None:
        self._stream = stream

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        # Set before waiting for the lock: from here until the assignment, aiokafka's getmany
        # waits for the assignment even with timeout 0, and the assignment waits for this
        # callback, so the batch chain holding the lock must not fetch (see `_fetch_now`).
        self._stream.rebalancing = True
        async with self._stream.lock:
            self._stream.generation += 1
            self._stream.clock.revoked(tp.partition for tp in revoked)

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        self._stream.rebalancing = False
        async with self._stream.lock:
            self._stream.generation += 1
            await self._stream.tail.catch_up()
            _log.info("raw_partitions_assigned", partitions=sorted(tp.partition for tp in assigned))
            self._stream.ready.set()
