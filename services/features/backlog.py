"""Which assigned partitions have nothing left to read for a consumer group — asked of Kafka.

After a restart the worker must not close windows while a partition's backlog is unread, but
a partition with no backlog must not hold them either. "No backlog" is not simply "committed
offset == end of the log": a transactional producer (ingestion) ends every transaction with a
commit marker, which takes an offset but is never delivered, so a group that read everything
still has its committed offset one or more below the end. This probe reads each partition from
the group's committed offset (the log start when it has none) with a consumer outside the
group: if it reaches the end without a single record, there is nothing to read; if it gets a
record, the backlog is real. Aborted records count as records (the worker reads uncommitted,
as faust does without exactly-once), so the probe never declares a partition empty that the
worker will still be delivered something from.
"""

from __future__ import annotations

import time
from collections.abc import Collection

import structlog
from aiokafka import TopicPartition

from services.common.kafka import make_admin, make_consumer
from services.common.settings import KafkaSettings

__all__ = ["nothing_to_read"]

_log = structlog.get_logger(__name__)


async def nothing_to_read(
    kafka: KafkaSettings,
    group_id: str,
    partitions: Collection[TopicPartition],
    timeout_s: float = 10.0,
) -> set[TopicPartition]:
    """The partitions of `partitions` with no record past `group_id`'s committed offset.

    A partition whose answer is not known within `timeout_s` is left out (it keeps holding
    windows until its backlog is delivered, or the clock's own limit passes)."""
    if not partitions:
        return set()
    tps = list(partitions)
    admin = make_admin(kafka)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group_id, partitions=tps)
    finally:
        await admin.close()
    consumer = make_consumer(kafka, group_id=None, isolation_level="read_uncommitted")
    await consumer.start()
    try:
        consumer.assign(tps)
        start_of_log = await consumer.beginning_offsets(tps)
        end_of_log = await consumer.end_offsets(tps)
        empty: set[TopicPartition] = set()
        probing: dict[TopicPartition, int] = {}
        for tp in tps:
            meta = offsets.get(tp)
            committed = meta.offset if meta is not None and meta.offset >= 0 else -1
            start = max(committed, start_of_log[tp])
            if start >= end_of_log[tp]:
                empty.add(tp)
            else:
                consumer.seek(tp, start)
                probing[tp] = end_of_log[tp]
        deadline = time.monotonic() + timeout_s
        while probing and time.monotonic() < deadline:
            fetched = await consumer.getmany(*probing, timeout_ms=200, max_records=len(probing))
            for tp, records in fetched.items():
                if records:
                    probing.pop(tp, None)  # a backlog: the worker reads it
            for tp in list(probing):
                if await consumer.position(tp) >= probing[tp]:
                    empty.add(tp)  # only markers (or nothing) up to the end
                    probing.pop(tp)
        if probing:
            _log.warning(
                "backlog probe timed out; those partitions hold windows until read",
                partitions=sorted(f"{tp.topic}[{tp.partition}]" for tp in probing),
            )
        return empty
    finally:
        await consumer.stop()
