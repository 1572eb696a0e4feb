"""Producing a transaction's records through aiokafka's batch API: one builder per partition
instead of a coroutine and a future per record."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from services.ingestion.pipeline import Outgoing

__all__ = ["BatchSender"]

_PARTITION_CACHE = 200_000


class BatchSender:
    """Sends `Outgoing` records; partitions come from the producer's own (Java compatible
    murmur2) partitioner, as `send()` would choose them. `partitions` is shared with the
    stream (topic → sorted partition ids, filled on first use)."""

    def __init__(self, producer: AIOKafkaProducer, partitions: dict[str, list[int]]) -> None:
        self._producer = producer
        self._partitions = partitions
        self._partitioner = DefaultPartitioner()
        self._partition_cache: dict[tuple[str, bytes], int] = {}

    async def send_all(self, outgoing: Sequence[Outgoing]) -> list[asyncio.Future[Any]]:
        """Produce through aiokafka's batch API: one builder per partition instead of a
        coroutine and a future per record. Partitions come from the producer's own (Java
        compatible murmur2) partitioner, as `send()` would choose them."""
        producer = self._producer
        builders: dict[tuple[str, int], Any] = {}
        futures: list[asyncio.Future[Any]] = []
        for topic in {out.topic for out in outgoing} - self._partitions.keys():
            self._partitions[topic] = sorted(await producer.partitions_for(topic))
        partition_of = self.partition_of
        for out in outgoing:
            slot = (
                out.topic,
                partition_of(out.topic, out.key) if out.partition is None else out.partition,
            )
            builder = builders.get(slot)
            if builder is None:
                builder = builders[slot] = producer.create_batch()
            record = {"timestamp": out.timestamp_ms, "key": out.key, "value": out.value}
            record["headers"] = list(out.headers) if out.headers else []  # aiokafka: a list
            if builder.append(**record) is None:
                futures.append(await producer.send_batch(builder, slot[0], partition=slot[1]))
                builder = builders[slot] = producer.create_batch()
                if builder.append(**record) is None:
                    raise RuntimeError(f"an empty batch refused {len(out.value)} bytes for {slot}")
        for (topic, partition), builder in builders.items():
            futures.append(await producer.send_batch(builder, topic, partition=partition))
        return futures

    def partition_of(self, topic: str, key: bytes | None) -> int:
        partitions = self._partitions[topic]
        if key is None:
            return partitions[0]
        cache = self._partition_cache
        slot = (topic, key)
        found = cache.get(slot)
        if found is None:
            # aiokafka's murmur2 is pure Python and costly; users recur, so remember it.
            if len(cache) >= _PARTITION_CACHE:
                cache.clear()
            found = cache[slot] = self._partitioner(key, partitions, partitions)
        return found
