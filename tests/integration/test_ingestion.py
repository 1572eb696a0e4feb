"""Ingestion against the real broker: foreign clients, Avro and JSON, HTTP collector, privacy,
dedup that survives a restart, refusing to start without the pseudonym secret."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import confluent_kafka
import httpx
import pytest

from services.common.codec import SchemaRegistry
from services.common.kafka import ensure_topics, make_producer
from services.common.privacy import pseudonymize
from services.common.settings import KafkaSettings
from services.common.topics import Topics
from tests.integration.ingestion_harness import (
    API_KEY,
    ROOT,
    SECRET,
    IngestionProcess,
    TopicReader,
    sum_metric,
)
from tests.keep_alive import serves_after_idle
from tests.polling import eventually

pytestmark = pytest.mark.integration

REGISTRY = SchemaRegistry.load()
EVENTS = REGISTRY.codec("AdEvent")
DLQ = REGISTRY.codec("DeadLetter")


def event(event_id: str, user: str, **over: object) -> dict[str, object]:
    return {
        "event_id": event_id,
        "type": "click",
        "occurred_at": int(time.time() * 1000) - 1000,
        "campaign_id": "spring",
        "creative_id": "cr-1",
        "decision_id": f"d-{event_id}",
        "user_id": user,
        "consent": {"personalization": True},
        "context": {"country": "DE", "device": "mobile"},
        "source": "it",
        **over,
    }


@pytest.fixture(scope="module")
async def shared(
    kafka_base: KafkaSettings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[KafkaSettings, Topics, IngestionProcess]]:
    """One service for the tests below (start-up is the slow part); each test uses its own
    event ids and looks at metric deltas."""
    kafka = kafka_base.model_copy(update={"topic_prefix": f"t{uuid.uuid4().hex[:10]}."})
    topics = Topics.from_settings(kafka)
    await ensure_topics(kafka, topics)
    svc = IngestionProcess(kafka, tmp_path_factory.mktemp("ingestion") / "ingestion.log")
    svc.start()
    try:
        await svc.wait_ready()
        yield kafka, topics, svc
    finally:
        assert svc.stop() == 0, svc.log_tail()


def _mine(prefix: str) -> Callable[[Any], bool]:
    return lambda rec: EVENTS.decode(rec.value)["event_id"].startswith(prefix)


async def test_foreign_client_zstd_headers_null_keys_json_and_avro(
    shared: tuple[KafkaSettings, Topics, IngestionProcess],
) -> None:
    kafka, topics, service = shared
    before = await service.metrics()
    producer = confluent_kafka.Producer(
        {
            "bootstrap.servers": kafka.bootstrap_servers,
            "compression.type": "zstd",
            "enable.idempotence": True,
            "linger.ms": 20,
        }
    )
    headers = [("trace-id", b"abc"), ("app", b"ios-7.1")]
    sent = {}
    for i in range(40):
        eid = f"foreign-{i}"
        ev = event(eid, f"ios-user-{i}")
        if i % 2:
            value = REGISTRY.codec("AdEvent", 1).encode({**ev, "occurred_at": ev["occurred_at"]})
        else:
            value = json.dumps(ev).encode()
        producer.produce(topics.events_raw.name, value=value, key=None, headers=headers)
        sent[eid] = ev
    producer.produce(topics.events_raw.name, value=b"\x00foreign junk", key=None, headers=headers)
    assert producer.flush(30) == 0

    async with (
        TopicReader(kafka, topics.events.name) as events,
        TopicReader(kafka, topics.events_dlq.name) as dlq,
    ):
        mine = _mine("foreign-")
        await events.until(lambda r: sum(map(mine, r)) >= 40, 60, "40 foreign events forwarded")
        await dlq.until(
            lambda r: any(DLQ.decode(x.value)["original_value"] == b"\x00foreign junk" for x in r),
            30,
            "the foreign junk dead-lettered",
        )
    got = {EVENTS.decode(r.value)["event_id"]: r for r in events.records if mine(r)}
    assert set(got) == set(sent)
    for eid, rec in got.items():
        ev = EVENTS.decode(rec.value)
        user = sent[eid]["user_id"]
        assert (
            ev["user_id"] == pseudonymize(SECRET.encode(), user)
            and rec.key == ev["user_id"].encode()
        )
        assert list(rec.headers) == headers  # the app's headers travel with the event
        assert ev["ingested_at"] is not None and ev["context"] == {
            "country": "DE",
            "device": "mobile",
        }
    (letter,) = [
        d
        for d in map(DLQ.decode, (r.value for r in dlq.records))
        if d["original_value"] == b"\x00foreign junk"
    ]
    assert letter["reason"] == "decode_error"
    assert [(h["key"], h["value"]) for h in letter["original_headers"]] == headers
    assert letter["original_key"] is None and letter["source_topic"] == topics.events_raw.name
    after = await service.metrics()
    for fmt in ("avro", "json"):
        grew = sum_metric(after, "admuse_ingestion_events_in_total", format=fmt) - sum_metric(
            before, "admuse_ingestion_events_in_total", format=fmt
        )
        assert grew == 20, fmt


async def test_no_raw_user_id_anywhere_in_events(
    shared: tuple[KafkaSettings, Topics, IngestionProcess],
) -> None:
    kafka, topics, service = shared
    before = await service.metrics()
    raw_ids = [f"raw-user-{uuid.uuid4().hex}" for _ in range(30)]
    producer = make_producer(kafka)
    await producer.start()
    try:
        for i, user in enumerate(raw_ids):
            ev = event(
                f"priv-{i}", user, context={"note": "hello"}, consent={"personalization": i % 3 > 0}
            )
            await producer.send(
                topics.events_raw.name,
                json.dumps(ev).encode(),
                key=user.encode(),
                headers=[("user", user.encode())],
            )
        await producer.flush()
    finally:
        await producer.stop()
    async with TopicReader(kafka, topics.events.name) as events:
        mine = _mine("priv-")
        await events.until(lambda r: sum(map(mine, r)) >= 20, 60, "20 consenting events forwarded")
    blob = b"".join(
        (r.key or b"") + (r.value or b"") + b"".join(k.encode() + (v or b"") for k, v in r.headers)
        for r in events.records
    )
    for user in raw_ids:
        assert user.encode() not in blob
        assert user.encode("utf-16-le") not in blob
    assert sum(map(mine, events.records)) == 20  # the 10 without consent were not forwarded
    dropped = sum_metric(
        await service.metrics(), "admuse_ingestion_dropped_total", reason="consent_denied"
    ) - sum_metric(before, "admuse_ingestion_dropped_total", reason="consent_denied")
    assert dropped == 10
    assert "raw-user-" not in service.log_tail(10**7)


async def test_http_collector(shared: tuple[KafkaSettings, Topics, IngestionProcess]) -> None:
    kafka, topics, service = shared
    before = await service.metrics()
    url = f"{service.url}/v1/events"
    good = event("http-1", "web-user-1")
    bad = event("http-2", "web-user-2", type="purchase")
    async with httpx.AsyncClient(timeout=30) as client:
        no_key = await client.post(url, json=good)
        assert no_key.status_code == 401
        assert no_key.headers["WWW-Authenticate"] == 'APIKey header="X-API-Key"'
        assert (await client.post(url, json=good, headers={"X-API-Key": "nope"})).status_code == 401
        auth = {"X-API-Key": API_KEY}
        one = await client.post(url, json=good, headers=auth)
        assert one.status_code == 202 and one.json()["accepted"] == 1
        batch = await client.post(url, json=[event("http-3", "web-user-3"), bad, 17], headers=auth)
        body = batch.json()
        assert batch.status_code == 202 and (body["accepted"], body["rejected"]) == (1, 2)
        results = body["results"]
        assert results[0] == {"index": 0, "event_id": "http-3", "accepted": True}
        assert results[1]["reason"] == "schema_violation" and results[1]["field"] == "type"
        assert results[2]["accepted"] is False
        too_big = await client.post(url, content=b"[" + b" " * 2_000_000 + b"]", headers=auth)
        assert too_big.status_code == 413
        not_json = await client.post(url, content=b"{oops", headers=auth)
        assert not_json.status_code == 400 and "JSON" in not_json.json()["error"]
        # NDJSON, gzip-encoded; the event without consent is reported, not accepted
        no_consent = event("http-5", "web-user-5", consent={})
        lines = b"\n".join(json.dumps(e).encode() for e in (event("http-4", "u4"), no_consent))
        ndjson = {**auth, "Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"}
        packed = await client.post(url, content=gzip.compress(lines + b"\n"), headers=ndjson)
        assert packed.status_code == 202, packed.text
        r4, r5 = packed.json()["results"]
        assert r4 == {"index": 0, "event_id": "http-4", "accepted": True}
        assert (r5["accepted"], r5["reason"], r5["event_id"]) == (
            False,
            "consent_missing",
            "http-5",
        )
        broken = await client.post(url, content=gzip.compress(lines)[:20], headers=ndjson)
        assert broken.status_code == 400 and "gzip" in broken.json()["error"]
        bomb = gzip.compress(b" " * 3_000_000)
        assert (await client.post(url, content=bomb, headers=ndjson)).status_code == 413
        assert (await client.get(f"{service.url}/healthz")).status_code == 200
        assert (await client.get(f"{service.url}/readyz")).status_code == 200
    async with TopicReader(kafka, topics.events.name) as events:
        mine = _mine("http-")
        await events.until(lambda r: sum(map(mine, r)) >= 3, 60, "3 HTTP events forwarded")
    got = {EVENTS.decode(r.value)["event_id"] for r in events.records if mine(r)}
    assert got == {"http-1", "http-3", "http-4"}
    after = await service.metrics()

    def grew(name: str, **labels: str) -> float:
        return sum_metric(after, name, **labels) - sum_metric(before, name, **labels)

    assert grew("admuse_ingestion_http_events_total", outcome="accepted") == 3
    assert grew("admuse_ingestion_http_events_total", outcome="rejected") == 3
    assert grew("admuse_ingestion_event_latency_seconds_count") == 3
    assert grew("admuse_ingestion_dead_letters_total") == 0  # rejected at the door


@pytest.mark.slow
async def test_an_idle_keep_alive_connection_outlives_a_clients_idle_expiry(
    shared: tuple[KafkaSettings, Topics, IngestionProcess],
) -> None:
    await serves_after_idle(shared[2].url)


async def test_dedup_survives_restart(kafka: KafkaSettings, topics: Topics, tmp_path: Path) -> None:
    svc = IngestionProcess(kafka, tmp_path / "ingestion.log")
    producer = make_producer(kafka)
    await producer.start()
    try:
        svc.start()
        await svc.wait_ready()
        await producer.send_and_wait(
            topics.events_raw.name, json.dumps(event("d-1", "u1")).encode()
        )
        async with TopicReader(kafka, topics.events.name) as events:
            await events.until(lambda r: len(r) >= 1, 60, "first copy forwarded")
            assert svc.stop() == 0
            svc.start()
            await svc.wait_ready()
            for eid in ("d-1", "d-2", "d-1"):
                await producer.send_and_wait(
                    topics.events_raw.name, json.dumps(event(eid, "u1")).encode()
                )

            async def settled() -> bool:
                samples = await svc.metrics()
                return sum_metric(samples, "admuse_ingestion_events_in_total") >= 3

            await eventually(settled, 60, "the restarted service to consume 3 records")
            await events.poll()
        ids = sorted(EVENTS.decode(r.value)["event_id"] for r in events.records)
        assert ids == ["d-1", "d-2"]
        assert sum_metric(await svc.metrics(), "admuse_ingestion_duplicates_total") == 2
    finally:
        await producer.stop()
        svc.stop()


def test_refuses_to_start_without_secret(kafka: KafkaSettings) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ADMUSE_PSEUDONYM_SECRET"}
    env.pop("ADMUSE_INGESTION_DEV_MODE", None)
    done = subprocess.run(
        [sys.executable, "-m", "services.ingestion"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert b"ADMUSE_PSEUDONYM_SECRET" in done.stderr
