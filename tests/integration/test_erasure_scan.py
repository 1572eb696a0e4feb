"""After `admuse erase`, no topic holds the user past the documented bound (issue #15).

Ingestion, features and inference run against the real broker; the user is decided for,
clicks, and sends a broken event (dead-lettered); then `admuse erase --user` runs. Every topic
of the run is then read whole and searched for the raw id and the pseudonym. The rule
(README "Erasure"): a topic may still hold them only if the broker deletes them within one
day — a delete topic with retention.ms ≤ 1 day, or a compacted topic with
max.compaction.lag.ms ≤ 1 day whose newest value per key no longer mentions the user. The
long-lived topics (decisions, rewards, stats, dead letters, models …) must not hold them at all.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import httpx
import pytest

from services.common.kafka import (
    describe_topic_configs,
    make_admin,
    make_consumer,
    make_producer,
    partitions_of,
    read_to_end,
)
from services.common.privacy import pseudonymize
from services.common.settings import KafkaSettings
from services.common.topics import USER_DATA_RETENTION_MS, Topics
from tests.integration.features_worker import FeaturesWorker
from tests.integration.inference_harness import (
    API_KEY,
    REPO,
    InferenceProcess,
    seed_campaign,
)
from tests.integration.ingestion_harness import SECRET, IngestionProcess, TopicReader
from tests.polling import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]

USER = "erase-me-4711"


async def _all_records(kafka: KafkaSettings, topic: str) -> list[tuple[bytes, bytes]]:
    """(key, value) of every record of a topic (uncommitted transactions included)."""
    tps = await partitions_of(kafka, [topic])
    consumer = make_consumer(kafka, group_id=None, isolation_level="read_uncommitted")
    await consumer.start()
    out: list[tuple[bytes, bytes]] = []
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        await read_to_end(
            consumer, end, lambda r: out.append((r.key or b"", r.value or b"")), timeout_s=30
        )
        return out
    finally:
        await consumer.stop()


async def _run_topics(kafka: KafkaSettings) -> list[str]:
    admin = make_admin(kafka)
    await admin.start()
    try:
        names = await admin.list_topics()
    finally:
        await admin.close()
    return sorted(n for n in names if n.startswith(kafka.topic_prefix))


async def test_an_erased_user_is_in_no_topic_past_the_bound(
    kafka: KafkaSettings, topics: Topics, tmp_path: Path
) -> None:
    pseudonym = pseudonymize(SECRET.encode(), USER)
    await seed_campaign(kafka, topics, "spring")
    (tmp_path / "features").mkdir()
    ingestion = IngestionProcess(kafka, tmp_path / "ingestion.log")
    features = FeaturesWorker(kafka, tmp_path / "features")
    inference = InferenceProcess(kafka, tmp_path / "inference", ADMUSE_PSEUDONYM_SECRET=SECRET)
    try:
        ingestion.start()
        features.start()
        await inference.start()
        await ingestion.wait_ready()
        await features.wait_ready()
        async with httpx.AsyncClient(base_url=inference.url, headers={"X-API-Key": API_KEY}) as c:
            body = {"campaign_id": "spring", "user_id": USER, "context": {"country": "DE"}}
            decision = (await c.post("/v1/decide", json=body)).json()
        now = int(time.time() * 1000)
        event = {"event_id": "ev-erase-1", "type": "click", "occurred_at": now,
                 "campaign_id": "spring", "creative_id": decision["creative_id"],
                 "decision_id": decision["decision_id"], "user_id": USER,
                 "consent": {"personalization": True}, "context": {"country": "DE"}}  # fmt: skip
        broken = {**event, "event_id": "ev-erase-2", "type": "purchase"}
        producer = make_producer(kafka)
        await producer.start()
        try:
            for ev in (event, broken):  # keyed by the raw id, as the simulator does
                await producer.send_and_wait(
                    topics.events_raw.name, json.dumps(ev).encode(), key=USER.encode()
                )
        finally:
            await producer.stop()
        async with TopicReader(kafka, topics.events_dlq.name) as dlq:
            await dlq.until(lambda r: len(r) >= 1, 60, "the broken event dead-lettered")
        async with TopicReader(kafka, topics.events.name) as events:
            await events.until(lambda r: len(r) >= 1, 60, "the click forwarded")

        env = {**os.environ, "ADMUSE_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
               "ADMUSE_KAFKA_TOPIC_PREFIX": kafka.topic_prefix,
               "ADMUSE_PSEUDONYM_SECRET": SECRET}  # fmt: skip
        erase = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "from services.cli import app; app()", "erase", "--user", USER,
            cwd=REPO, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _out, err = await asyncio.wait_for(erase.communicate(), 120)
        assert erase.returncode == 0, err.decode()
        await eventually(
            lambda: _erasures(features), 60, "features to apply the erasure request", 0.5
        )
    finally:
        inference.stop()
        ingestion.stop()
        features.stop()

    names = await _run_topics(kafka)
    configs = await describe_topic_configs(kafka, names)
    needles = (USER.encode(), pseudonym.encode())
    holding: set[str] = set()
    for name in names:
        if any(any(n in k + v for n in needles) for k, v in await _all_records(kafka, name)):
            holding.add(name)
    # The scan sees the user where the bound allows it (so it can see at all) ...
    assert topics.events_raw.name in holding and topics.events.name in holding
    assert topics.erasure.name in holding
    # ... and nowhere else.
    for name in holding:
        cfg = configs[name]
        if cfg.get("cleanup.policy") == "compact":
            assert int(cfg["max.compaction.lag.ms"]) <= USER_DATA_RETENTION_MS, name
            latest = {}
            for k, v in await _all_records(kafka, name):
                latest[k] = v
            assert not any(any(n in v for n in needles) for v in latest.values()), name
        else:
            assert int(cfg["retention.ms"]) <= USER_DATA_RETENTION_MS, (name, cfg["retention.ms"])
    for long_lived in (topics.decisions, topics.rewards, topics.events_dlq, topics.stats):
        assert long_lived.name not in holding


async def _erasures(features: FeaturesWorker) -> bool:
    return await features.metric("admuse_features_erasures_total") >= 1
