"""The backlog probe against the real broker: a group that read everything a transactional
writer committed has nothing to read, though its committed offset is below the end of the log
(the commit marker); unread records, aborted ones included, are a backlog."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from aiokafka.structs import OffsetAndMetadata

from services.common.codec import SchemaRegistry
from services.common.kafka import make_admin, make_consumer, make_producer
from services.common.settings import KafkaSettings
from services.common.topics import Topics
from services.features.backlog import nothing_to_read
from tests.integration.features_worker import FeaturesWorker, TopicReader, decision, event
from tests.polling import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(200)]


async def _transaction(kafka: KafkaSettings, tp: TopicPartition, n: int, *, commit: bool) -> None:
    producer = make_producer(kafka, transactional_id=f"{kafka.topic_prefix}probe-{tp.partition}")
    await producer.start()
    try:
        await producer.begin_transaction()
        for i in range(n):
            await producer.send(tp.topic, f"v{i}".encode(), partition=tp.partition)
        if commit:
            await producer.commit_transaction()
        else:
            await producer.abort_transaction()
    finally:
        await producer.stop()


async def _plain(kafka: KafkaSettings, tp: TopicPartition, n: int) -> None:
    producer = make_producer(kafka)
    await producer.start()
    try:
        for i in range(n):
            await producer.send_and_wait(tp.topic, f"v{i}".encode(), partition=tp.partition)
    finally:
        await producer.stop()


async def _commit(kafka: KafkaSettings, group: str, offsets: dict[TopicPartition, int]) -> None:
    consumer = make_consumer(kafka, group_id=group)
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit({tp: OffsetAndMetadata(o, "") for tp, o in offsets.items()})
    finally:
        await consumer.stop()


async def test_probe_tells_markers_from_a_backlog(kafka: KafkaSettings, topics: Topics) -> None:
    name = topics.events.name
    empty, read, unread, aborted = (TopicPartition(name, p) for p in range(4))
    group = f"{kafka.topic_prefix}features"
    await _transaction(kafka, read, 5, commit=True)  # offsets 0-4, the commit marker at 5
    await _plain(kafka, unread, 5)
    await _transaction(kafka, aborted, 3, commit=True)  # 0-2, marker 3
    await _transaction(kafka, aborted, 2, commit=False)  # 4-5 aborted, marker 6
    # The group handled every delivered record of `read` and `aborted`'s committed part, and
    # 2 of `unread`'s 5.
    await _commit(kafka, group, {read: 5, unread: 2, aborted: 4})

    settled = await nothing_to_read(kafka, group, [empty, read, unread, aborted])
    assert settled == {empty, read}  # aborted records are still delivered to a reader of
    # uncommitted data, as the faust worker is

    # The group reads on to the end of each: nothing left anywhere.
    await _commit(kafka, group, {unread: 5, aborted: 6})
    assert await nothing_to_read(kafka, group, [empty, read, unread, aborted]) == {
        empty,
        read,
        unread,
        aborted,
    }


async def test_a_group_without_offsets_reads_from_the_start(
    kafka: KafkaSettings, topics: Topics
) -> None:
    name = topics.events.name
    aborted_only, records = TopicPartition(name, 0), TopicPartition(name, 1)
    await _transaction(kafka, aborted_only, 2, commit=False)  # aborted: 0-1, marker 2
    await _plain(kafka, records, 1)
    group = f"{kafka.topic_prefix}fresh"
    assert await nothing_to_read(kafka, group, [aborted_only, records]) == set()
    assert await nothing_to_read(kafka, group, []) == set()


async def test_restarted_worker_closes_windows_on_time_after_transactional_events(
    kafka: KafkaSettings, topics: Topics, registry: SchemaRegistry, tmp_path: Path
) -> None:
    """Ingestion writes events in transactions, so every events partition it wrote to ends in
    a commit marker. A worker restarted in a quiet moment must still close the open windows on
    time (reward 0), not hold them as if a backlog were unread."""
    window_ms = 8000
    worker = FeaturesWorker(
        kafka,
        tmp_path,
        ADMUSE_FEATURES_TICK_INTERVAL_S="0.25",
        ADMUSE_FEATURES_CLOSE_GRACE_MS="1000",
        ADMUSE_FEATURES_COMMIT_INTERVAL_S="0.5",
    )
    worker.start()
    try:
        await worker.wait_ready()
        quiet = decision("probe", "cr1", user="u-quiet", window_ms=window_ms)
        clicked = decision("probe", "cr2", user="u-click", window_ms=window_ms)
        dcodec, ecodec = registry.codec("Decision"), registry.codec("AdEvent")
        decisions = make_producer(kafka)  # inference's decision log: not transactional
        await decisions.start()
        try:
            for d in (quiet, clicked):
                await decisions.send_and_wait(
                    topics.decisions.name, dcodec.encode(d), key=d["decision_id"].encode()
                )
        finally:
            await decisions.stop()
        events = make_producer(kafka, transactional_id=f"{kafka.topic_prefix}ingestion-like")
        await events.start()
        try:
            await events.begin_transaction()
            await events.send(topics.events.name, ecodec.encode(event(clicked)), key=b"u-click")
            await events.commit_transaction()
        finally:
            await events.stop()
        async with TopicReader(kafka, topics.rewards.name, "Reward", registry) as rewards:
            await rewards.until(lambda r: clicked["decision_id"] in r.by_key(), timeout_s=30)

            async def click_committed() -> bool:  # the worker's group is past the click
                admin = make_admin(kafka)
                await admin.start()
                try:
                    offsets = await admin.list_consumer_group_offsets(
                        f"{kafka.topic_prefix}admuse-features",
                        partitions=[
                            TopicPartition(topics.events.name, p)
                            for p in range(topics.events.partitions)
                        ],
                    )
                finally:
                    await admin.close()
                return sum(max(m.offset, 0) for m in offsets.values()) >= 1

            await eventually(click_committed, 30, "the worker to commit past the click")
            worker.kill()
            worker.start()
            await worker.wait_ready()
            restarted = time.monotonic()
            closes_in = quiet["decided_at"] / 1000 + (window_ms + 1000) / 1000 - time.time()
            # The backlog rule would hold the window for 60 s after the restart.
            await rewards.until(
                lambda r: quiet["decision_id"] in r.by_key(), timeout_s=max(closes_in, 0) + 20
            )
            took = time.monotonic() - restarted
        assert not rewards.by_key()[quiet["decision_id"]]["clicked"]
        print(f"\nwindow closed {took:.1f} s after the restart ({closes_in:.1f} s were left)")
        assert '"events_partitions_probed"' in worker.tail(200_000)
    finally:
        worker.stop()
