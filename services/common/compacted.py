"""Read a small compacted topic (campaigns, creatives) to its end: the latest value per key.

The one read-modify-write helper of the operator tools (`admuse campaign`, `admuse creatives`
and the console): they read the current record of a key here, change it by the rules of
`services.common.lifecycle` / `services.common.review`, and publish it back. Records a reader
cannot decode are skipped (the owning service counts and logs them); tombstones remove keys.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

__all__ = ["quiet_new_topic_noise", "read_compacted"]


async def read_compacted(
    kafka: Any, topic: str, codec: Any, timeout_s: float = 30.0
) -> dict[str, dict[str, Any]]:
    """Latest decodable value per key of `topic`, read from the beginning to the end offsets
    seen at the start (`services.common.kafka.read_from_beginning`); raises TimeoutError when
    the end is not reached within `timeout_s`."""
    from services.common.codec import CodecError
    from services.common.kafka import read_from_beginning

    out: dict[str, dict[str, Any]] = {}

    def keep(rec: Any) -> None:
        key = rec.key.decode("utf-8", "replace") if rec.key else ""
        if rec.value is None:
            out.pop(key, None)
            return
        try:
            out[key] = codec.decode(rec.value)
        except CodecError:
            pass  # not ours to judge here; the owning service dead-letters it

    with quiet_new_topic_noise():
        await read_from_beginning(kafka, [topic], keep, timeout_s=timeout_s)
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
