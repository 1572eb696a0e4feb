"""A transaction whose records the broker did not take must not commit its raw offsets.

aiokafka's `commit_transaction` flushes the transaction's batches but ignores whether they were
delivered: a batch that failed (expired while the broker was down, rejected by it) leaves the
transaction committable, and committing it commits the raw offsets without the records — raw
events lost (#13's chaos run, at broker stops). Here the broker deterministically rejects the
batches (admuse.events' max.message.bytes made too small), against the real broker: ingestion
must abort and stop with nothing committed, and once the topic takes the records again a
restart forwards every event exactly once.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from services.common.codec import SchemaRegistry
from services.common.kafka import make_admin, make_producer
from services.common.settings import KafkaSettings
from services.common.topics import Topics, TopicSpec
from tests.integration.ingestion_harness import IngestionProcess, TopicReader, raw_progress
from tests.polling import eventually

pytestmark = [pytest.mark.integration]

EVENTS = SchemaRegistry.load().codec("AdEvent")
COUNT = 120


async def _set_configs(kafka: KafkaSettings, spec: TopicSpec, **extra: str) -> None:
    admin = make_admin(kafka)
    await admin.start()
    try:
        configs = {**spec.configs(), **{k.replace("_", "."): v for k, v in extra.items()}}
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, spec.name, configs)])
    finally:
        await admin.close()


async def _committed(kafka: KafkaSettings, topics: Topics, group: str) -> int:
    """Raw records the ingestion group has committed."""
    raw = topics.events_raw
    return (await raw_progress(kafka, raw.name, raw.partitions, group))[0]


async def test_undelivered_records_abort_the_transaction_and_lose_nothing(
    kafka: KafkaSettings, topics: Topics, tmp_path: Path
) -> None:
    group = f"{kafka.topic_prefix}admuse-ingestion"
    producer = make_producer(kafka)
    await producer.start()
    sent = [f"d-{i:04d}" for i in range(COUNT)]
    try:
        for eid in sent:  # one user: one partition of admuse.events, batches well over 1 KiB
            ev = {
                "event_id": eid,
                "type": "click",
                "occurred_at": int(time.time() * 1000),
                "campaign_id": "delivery",
                "user_id": "user-1",
                "consent": {"personalization": True},
            }
            await producer.send(topics.events_raw.name, json.dumps(ev).encode(), key=b"user-1")
        await producer.flush()
    finally:
        await producer.stop()
    await _set_configs(kafka, topics.events, max_message_bytes="1024")
    svc = IngestionProcess(kafka, tmp_path / "ingestion.log", ADMUSE_INGESTION_MAX_BATCH="500")
    try:
        svc.start()
        await eventually(lambda: not svc.alive, 60, "ingestion to stop on undelivered records")
        assert svc.stop() != 0
        # The heart of it: the aborted transaction committed none of its raw offsets.
        assert await _committed(kafka, topics, group) == 0, "offsets committed without records"
        log = svc.log_tail(200_000)
        assert "records_not_delivered" in log, log[-3000:]

        await _set_configs(kafka, topics.events)  # the topic takes the records again
        svc.start()

        async def drained() -> bool:
            return await _committed(kafka, topics, group) == COUNT

        await eventually(drained, 90, f"every raw record committed\n{svc.log_tail()}", 0.5)
        async with TopicReader(kafka, topics.events.name) as events:
            await events.poll()
        counts = Counter(EVENTS.decode(r.value)["event_id"] for r in events.records)
    finally:
        code = svc.stop()
    assert code == 0, svc.log_tail()
    assert sorted(counts) == sent, f"lost: {sorted(set(sent) - set(counts))[:5]}"
    assert max(counts.values()) == 1, "an event forwarded twice"
