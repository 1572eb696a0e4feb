"""Rebuild the dedup window from admuse.events itself (state from Kafka, not local disk).

A consumer without a group, assigned every partition of admuse.events, reading committed
records only. It starts at the first record younger than the horizon and `catch_up()` reads to
the last stable offset, adding each event_id with its record timestamp (= ingested_at). Call it
after the transactional producer has started (which finishes or aborts any transaction a
previous incarnation left open) and on every partition assignment, before processing.
"""

from __future__ import annotations

import time

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.common.kafka import make_consumer, partitions_of, positions_reached
from services.common.settings import KafkaSettings
from services.ingestion.dedup import DedupWindow, event_id_of

__all__ = ["EventsTail"]

_log = structlog.get_logger(__name__)


class EventsTail:
    def __init__(
        self, kafka: KafkaSettings, topic: str, dedup: DedupWindow, fingerprints: set[bytes]
    ) -> None:
        self._kafka = kafka
        self._topic = topic
        self._dedup = dedup
        self._fingerprints = fingerprints
        self._consumer: AIOKafkaConsumer | None = None
        self._tps: list[TopicPartition] = []
        self.records_read = 0

    async def start(self, now_ms: int) -> None:
        consumer = make_consumer(
            self._kafka, group_id=None, max_poll_records=5000, fetch_max_bytes=16 * 1024 * 1024
        )
        await consumer.start()
        self._consumer = consumer
        self._tps = await partitions_of(self._kafka, [self._topic])
        consumer.assign(self._tps)
        start_ms = now_ms - self._dedup.horizon_ms
        found = await consumer.offsets_for_times(dict.fromkeys(self._tps, max(0, start_ms)))
        ends = await consumer.end_offsets(self._tps)
        for tp in self._tps:
            at = found.get(tp)
            consumer.seek(tp, at.offset if at is not None else ends[tp])
        consumer.pause(*self._tps)  # no background fetching between catch-ups

    async def catch_up(self) -> int:
        """Read admuse.events to its last stable offset; return the event_ids added."""
        consumer = self._consumer
        if consumer is None:
            raise RuntimeError("EventsTail.start() first")
        started = time.monotonic()
        before = len(self._dedup)
        ends = await consumer.end_offsets(self._tps)
        consumer.resume(*self._tps)
        try:
            await self._read_to(consumer, ends)
        finally:
            consumer.pause(*self._tps)
        added = len(self._dedup) - before
        _log.info(
            "dedup_window_caught_up_from_events_topic",
            added=added,
            entries=len(self._dedup),
            seconds=round(time.monotonic() - started, 3),
        )
        return added

    async def _read_to(self, consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> None:
        idle_rounds = 0
        while await self._behind(ends):
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            if not batches:
                idle_rounds += 1
                if idle_rounds >= 20:  # positions stuck below a stable end: say so, go on
                    _log.warning(
                        "dedup_catch_up_stopped_early", ends={str(k): v for k, v in ends.items()}
                    )
                    break
                continue
            idle_rounds = 0
            for records in batches.values():
                for rec in records:
                    self.records_read += 1
                    value = rec.value
                    if value is None or value[2:10] not in self._fingerprints:
                        continue
                    event_id = event_id_of(value)
                    if event_id is not None:
                        self._dedup.add(event_id, rec.timestamp)

    async def _behind(self, ends: dict[TopicPartition, int]) -> bool:
        assert self._consumer is not None
        return not await positions_reached(self._consumer, ends)

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
