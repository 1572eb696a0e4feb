"""Local, read-only views of the compacted campaign and creative topics.

Each view reads its topic from the beginning without a consumer group, is *ready* once it
has caught up with the end offsets it saw at start, and then keeps following. A record that
does not decode is logged and skipped (the previous value for its key stays).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from aiokafka import TopicPartition

from services.common.codec import CodecError, RecordCodec
from services.common.kafka import make_consumer, positions_reached
from services.common.logging import get_logger
from services.common.settings import KafkaSettings

__all__ = ["CompactedView"]

log = get_logger(__name__)


class CompactedView:
    """``key -> decoded value`` of a compacted topic, kept current in the background."""

    def __init__(
        self,
        kafka: KafkaSettings,
        topic: str,
        partitions: int,
        codec: RecordCodec,
        *,
        on_bad: Callable[[str], None] | None = None,
    ) -> None:
        self._kafka = kafka
        self._topic = topic
        self._partitions = partitions
        self._codec = codec
        self._on_bad = on_bad
        self.values: dict[str, dict[str, Any]] = {}
        self.ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self, timeout_s: float = 60.0) -> None:
        """Start following the topic; return once caught up (or raise after `timeout_s`)."""
        self._task = asyncio.create_task(self._run(), name=f"view:{self._topic}")
        waiter = asyncio.create_task(self.ready.wait())
        done, _ = await asyncio.wait(
            {self._task, waiter}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
        if waiter not in done:
            waiter.cancel()
            if self._task in done:
                self._task.result()  # raises what stopped it
            raise TimeoutError(f"could not read {self._topic} to its end within {timeout_s}s")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _run(self) -> None:
        consumer = make_consumer(self._kafka, group_id=None, isolation_level="read_committed")
        await consumer.start()
        try:
            tps = [TopicPartition(self._topic, p) for p in range(self._partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            end = await consumer.end_offsets(tps) if tps else {}
            if await positions_reached(consumer, end):
                self.ready.set()
            while True:
                batch = await consumer.getmany(timeout_ms=500, max_records=500)
                for records in batch.values():
                    for rec in records:
                        self._apply(rec.key, rec.value)
                if not self.ready.is_set() and await positions_reached(consumer, end):
                    self.ready.set()
        finally:
            await consumer.stop()

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        k = key.decode("utf-8", "replace")
        if value is None:
            self.values.pop(k, None)
            return
        try:
            self.values[k] = self._codec.decode(value)
        except CodecError as exc:
            log.warning("bad_record", topic=self._topic, key=k, reason=exc.reason, error=str(exc))
            if self._on_bad:
                self._on_bad(exc.reason)
