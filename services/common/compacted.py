"""Read a small compacted topic (campaigns, creatives) to its end: the latest value per key.

The one read-modify-write helper of the operator tools (`admuse campaign`, `admuse creatives`
and the console): they read the current record of a key here, change it by the rules of
`services.common.lifecycle` / `services.common.review`, and publish it back. Records a reader
cannot decode are skipped (the owning service counts and logs them); tombstones remove keys.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

__all__ = ["quiet_new_topic_noise", "read_compacted"]


async def read_compacted(
    kafka: Any, topic: str, codec: Any, timeout_s: float = 30.0
) -> dict[str, dict[str, Any]]:
    """Latest decodable value per key of `topic`, read from the beginning to the end offsets
    seen at the start; raises TimeoutError when the end is not reached within `timeout_s`."""
    from services.common.kafka import make_consumer

    consumer = make_consumer(kafka, group_id=None)
    await consumer.start()
    try:
        with quiet_new_topic_noise():
            return await _read_to_end(consumer, kafka, topic, codec, timeout_s)
    finally:
        await consumer.stop()


async def _read_to_end(
    consumer: Any, kafka: Any, topic: str, codec: Any, timeout_s: float
) -> dict[str, dict[str, Any]]:
    from aiokafka import TopicPartition

    from services.common.codec import CodecError
    from services.common.topics import Topics

    spec = Topics.from_settings(kafka).by_name(topic)
    parts = [TopicPartition(topic, p) for p in range(spec.partitions)]
    consumer.assign(parts)
    await consumer.seek_to_beginning(*parts)
    end = await consumer.end_offsets(parts)
    out: dict[str, dict[str, Any]] = {}
    pending = {tp for tp in parts if end[tp] > 0}
    deadline = time.monotonic() + timeout_s
    while pending:
        if time.monotonic() > deadline:
            raise TimeoutError(f"could not read {topic} to its end within {timeout_s:g} s")
        batches = await consumer.getmany(*pending, timeout_ms=500, max_records=2000)
        for records in batches.values():
            for rec in records:
                key = rec.key.decode("utf-8", "replace") if rec.key else ""
                if rec.value is None:
                    out.pop(key, None)
                    continue
                try:
                    out[key] = codec.decode(rec.value)
                except CodecError:
                    continue  # not ours to judge here; the owning service dead-letters it
        for tp in list(pending):
            if await consumer.position(tp) >= end[tp]:
                pending.discard(tp)
    return out


@contextlib.contextmanager
def quiet_new_topic_noise() -> Iterator[None]:
    """aiokafka logs "not found in cluster metadata" / NotLeaderForPartition while a fresh
    topic's leader settles; it retries them itself, and a lasting failure still raises. Quiet
    those loggers for the moment it takes."""
    loggers = [logging.getLogger(n) for n in ("aiokafka.cluster", "aiokafka.consumer.fetcher")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
