"""The foundation against the real broker: topics, Avro produce/consume, foreign compression."""

from __future__ import annotations

import asyncio
from typing import Any

import confluent_kafka
import pytest
from aiokafka.admin import NewTopic

from services.common.codec import SchemaRegistry
from services.common.kafka import (
    TopicConfigMismatch,
    describe_topic_configs,
    ensure_topics,
    make_admin,
    make_consumer,
    make_producer,
)
from services.common.settings import KafkaSettings
from services.common.topics import Topics
from tests.polling import eventually

pytestmark = pytest.mark.integration


async def _consume(
    kafka: KafkaSettings, topic: str, group_id: str, n: int, timeout_s: float = 20.0
):
    consumer = make_consumer(kafka, topic, group_id=group_id)
    await consumer.start()
    out: list[Any] = []

    async def read_more() -> bool:
        batch = await consumer.getmany(timeout_ms=500)
        out.extend(r for records in batch.values() for r in records)
        return len(out) >= n

    try:
        await eventually(read_more, timeout_s, f"{n} records on {topic}", every_s=0)
    finally:
        await consumer.stop()
    return out


async def test_topics_are_created_idempotently_with_declared_configs(kafka: KafkaSettings) -> None:
    topics = Topics.from_settings(kafka)
    created = await ensure_topics(kafka, topics)
    assert sorted(created) == sorted(s.name for s in topics)
    assert await ensure_topics(kafka, topics) == []  # second run: nothing to do, no error

    admin = make_admin(kafka)
    await admin.start()
    try:
        meta = {t["topic"]: t for t in await admin.describe_topics([s.name for s in topics])}
    finally:
        await admin.close()
    configs = await describe_topic_configs(kafka, [s.name for s in topics])
    for spec in topics:
        assert len(meta[spec.name]["partitions"]) == spec.partitions, spec.name
        for key, value in spec.configs().items():
            assert configs[spec.name][key] == value, (spec.name, key)


async def test_existing_topic_with_other_policy_is_reported(kafka: KafkaSettings) -> None:
    spec = Topics.from_settings(kafka).stats  # declared compacted
    admin = make_admin(kafka)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(spec.name, spec.partitions, 1, topic_configs={"cleanup.policy": "delete"})]
        )
    finally:
        await admin.close()
    with pytest.raises(TopicConfigMismatch, match=r"cleanup\.policy=delete"):
        await ensure_topics(kafka, [spec])


async def test_avro_records_round_trip_through_the_broker(
    kafka: KafkaSettings, topics: Topics, group_id: str, registry: SchemaRegistry
) -> None:
    codec = registry.codec("ErasureRequest")
    sent = [
        {
            "request_id": f"r{i}",
            "user_id": f"p{i}",
            "requested_at": 1_764_000_000_000 + i,
            "reason": None,
        }
        for i in range(50)
    ]
    producer = make_producer(kafka, transactional_id=f"{group_id}-tx")
    await producer.start()
    try:
        async with producer.transaction():
            for value in sent:
                await producer.send(
                    topics.erasure.name, codec.encode(value), key=value["user_id"].encode()
                )
    finally:
        await producer.stop()
    records = await _consume(kafka, topics.erasure.name, group_id, len(sent))
    got = sorted((codec.decode(r.value) for r in records), key=lambda v: v["request_id"])
    assert [g["request_id"] for g in got] == sorted(v["request_id"] for v in sent)
    assert all(int(g["requested_at"].timestamp() * 1000) >= 1_764_000_000_000 for g in got)


@pytest.mark.parametrize("compression", ["gzip", "snappy", "lz4", "zstd"])
async def test_reads_batches_compressed_by_librdkafka(
    kafka: KafkaSettings, topics: Topics, group_id: str, registry: SchemaRegistry, compression: str
) -> None:
    codec = registry.codec("ErasureRequest")
    topic = topics.erasure.name
    producer = confluent_kafka.Producer(
        {
            "bootstrap.servers": kafka.bootstrap_servers,
            "compression.type": compression,
            "linger.ms": 50,
            "batch.num.messages": 1000,
        }
    )
    n = 200
    for i in range(n):
        value = {
            "request_id": f"{compression}-{i}",
            "user_id": "p" * 40,
            "requested_at": i,
            "reason": "x" * 100,
        }
        producer.produce(topic, codec.encode(value), key=b"k", headers=[("origin", b"librdkafka")])
    assert await asyncio.to_thread(producer.flush, 20) == 0
    records = await _consume(kafka, topic, group_id, n)
    assert len(records) == n
    assert {codec.decode(r.value)["request_id"] for r in records} == {
        f"{compression}-{i}" for i in range(n)
    }
    assert records[0].headers == (("origin", b"librdkafka"),)
