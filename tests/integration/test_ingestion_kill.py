"""Kill -9 ingestion repeatedly mid-stream against the real broker: after the last restart every
event_id is in admuse.events exactly once (read_committed) and none is missing."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from pathlib import Path

import pytest

from services.common.codec import SchemaRegistry
from services.common.kafka import make_producer
from services.common.settings import KafkaSettings
from services.common.topics import Topics
from tests.integration.ingestion_harness import (
    IngestionProcess,
    TopicReader,
    raw_progress,
    sum_metric,
)
from tests.polling import eventually
from tests.procs import alive_pids

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EVENTS = SchemaRegistry.load().codec("AdEvent")
KILLS = 6
BURST = 40


async def _produce(kafka: KafkaSettings, topic: str, sent: list[str], stop: asyncio.Event) -> None:
    """Feed raw events in bursts until `stop`; about 8% of events are sent twice."""
    producer = make_producer(kafka)
    await producer.start()
    rng = random.Random(7)
    try:
        while not stop.is_set():
            for _ in range(BURST):
                eid = f"k-{len(sent):06d}"
                ev = {
                    "event_id": eid,
                    "type": "click",
                    "occurred_at": int(time.time() * 1000),
                    "campaign_id": "kill",
                    "user_id": f"user-{rng.randrange(500)}",
                    "consent": {"personalization": True},
                }
                for _ in range(2 if rng.random() < 0.08 else 1):
                    await producer.send(topic, json.dumps(ev).encode(), key=eid.encode())
                sent.append(eid)
            await producer.flush()
            await asyncio.sleep(0.1)  # pacing: keeps the stream flowing through every kill
    finally:
        await producer.stop()


async def _lag(kafka: KafkaSettings, topics: Topics, group: str) -> int:
    """Raw records not yet committed by the ingestion group."""
    raw = topics.events_raw
    committed, end = await raw_progress(kafka, raw.name, raw.partitions, group)
    return end - committed


async def test_kill_minus_nine_loses_nothing_duplicates_nothing(
    kafka: KafkaSettings, topics: Topics, tmp_path: Path
) -> None:
    rng = random.Random()
    svc = IngestionProcess(
        kafka,
        tmp_path / "ingestion.log",
        ADMUSE_INGESTION_MAX_BATCH="200",
        ADMUSE_INGESTION_TRANSFORM_WORKERS="1",
    )
    workers: list[int] = []  # of the killed incarnations
    sent: list[str] = []
    feeding = asyncio.Event()
    feeder = asyncio.create_task(_produce(kafka, topics.events_raw.name, sent, feeding))
    try:
        for _ in range(KILLS):
            svc.start()
            await svc.wait_ready()
            workers.extend(svc.worker_pids())
            samples = await svc.metrics()
            assert sum_metric(samples, "admuse_ingestion_transform_workers") == 1
            target = rng.randint(1, 300)

            async def progressed(target: int = target) -> bool:
                samples = await svc.metrics()
                return sum_metric(samples, "admuse_ingestion_events_in_total") >= target

            await eventually(progressed, 60, "ingestion to make progress before the kill", 0.05)
            assert not feeder.done(), "the feeder must still be producing at every kill"
            svc.kill()
        feeding.set()
        await asyncio.wait_for(feeder, 60)
        svc.start()
        await svc.wait_ready()

        async def drained() -> bool:
            return await _lag(kafka, topics, f"{kafka.topic_prefix}admuse-ingestion") == 0

        await eventually(drained, 120, "ingestion to commit every raw record", 0.5)
        assert len(workers) == KILLS, f"one transform worker per incarnation, got {workers}"
        await eventually(
            lambda: not alive_pids(workers), 10, f"killed instances' workers {workers} to exit"
        )
        async with TopicReader(kafka, topics.events.name) as events:
            await events.poll()
        counts = Counter(EVENTS.decode(r.value)["event_id"] for r in events.records)
    finally:
        feeding.set()
        feeder.cancel()
        assert svc.stop() == 0, svc.log_tail()
    assert len(sent) > 1000
    missing = set(sent) - set(counts)
    twice = {eid: n for eid, n in counts.items() if n > 1}
    assert not missing, f"{len(missing)} events lost, e.g. {sorted(missing)[:5]}"
    assert not twice, (
        f"{len(twice)} events forwarded more than once, e.g. {list(twice.items())[:5]}"
    )
    assert set(counts) == set(sent)


async def test_scale_out_and_in_rebalances_lose_nothing_duplicate_nothing(
    kafka: KafkaSettings, topics: Topics, tmp_path: Path
) -> None:
    """A second instance joins mid-stream (partitions move to it), then the first stops (its
    partitions move to the second once its session times out): every event exactly once."""
    first = IngestionProcess(kafka, tmp_path / "a.log", ADMUSE_INGESTION_INSTANCE_ID="a")
    # The second transforms in its own process: both modes share one group.
    second = IngestionProcess(
        kafka,
        tmp_path / "b.log",
        ADMUSE_INGESTION_INSTANCE_ID="b",
        ADMUSE_INGESTION_TRANSFORM_WORKERS="0",
    )
    sent: list[str] = []
    feeding = asyncio.Event()
    feeder = asyncio.create_task(_produce(kafka, topics.events_raw.name, sent, feeding))

    async def consumed(svc: IngestionProcess, at_least: int) -> None:
        async def check() -> bool:
            return sum_metric(await svc.metrics(), "admuse_ingestion_events_in_total") >= at_least

        await eventually(check, 90, f"{svc.log_path.name} to consume {at_least} records")

    try:
        first.start()
        await first.wait_ready()
        await consumed(first, 100)
        second.start()
        await second.wait_ready()
        await consumed(second, 100)  # it got partitions and works
        assert first.stop() == 0, first.log_tail()
        now = sum_metric(await second.metrics(), "admuse_ingestion_events_in_total")
        await consumed(second, int(now) + 300)  # still streaming; the first's share moves over
        feeding.set()
        await asyncio.wait_for(feeder, 60)

        async def drained() -> bool:
            return await _lag(kafka, topics, f"{kafka.topic_prefix}admuse-ingestion") == 0

        # Zero lag with the first instance gone: the second took over all its partitions.
        await eventually(drained, 120, "every raw record committed", 0.5)
        async with TopicReader(kafka, topics.events.name) as events:
            await events.poll()
        counts = Counter(EVENTS.decode(r.value)["event_id"] for r in events.records)
    finally:
        feeding.set()
        feeder.cancel()
        first.stop()
        assert second.stop() == 0, second.log_tail()
    assert not set(sent) - set(counts), "events lost"
    assert not {e: n for e, n in counts.items() if n > 1}, "events forwarded twice"
    assert set(counts) == set(sent)
