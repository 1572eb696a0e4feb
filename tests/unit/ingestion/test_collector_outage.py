"""The collector while Kafka is away: a real aiokafka client pointed at a port where no broker
answers; POST /v1/events must answer 503 with Retry-After within 2 s, not hang."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import httpx
from prometheus_client import generate_latest

from services.cli.stack import free_port
from services.common.kafka import make_producer
from services.common.producer import ResilientProducer
from services.common.settings import KafkaSettings
from services.ingestion.collector import build_http_app
from services.ingestion.metrics import IngestionMetrics
from services.ingestion.validation import Limits


def event(event_id: str) -> dict[str, object]:
    return {
        "event_id": event_id,
        "type": "impression",
        "campaign_id": "c1",
        "creative_id": "cr1",
        "user_id": "u1",
        "occurred_at": datetime.now(UTC).isoformat(),
        "consent": {"personalization": True},
    }


async def test_no_broker_gives_503_with_retry_after_within_2s() -> None:
    kafka = KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}", request_timeout_ms=1000)
    producer = ResilientProducer(lambda: make_producer(kafka), name="collector")
    metrics = IngestionMetrics()
    app = build_http_app(
        producer=producer,
        raw_topic="admuse.events.raw",
        metrics=metrics,
        api_keys=frozenset({"k"}),
        allow_without_key=False,
        max_body_bytes=1 << 20,
        max_batch=100,
        limits=Limits(),
        is_ready=lambda: True,
        is_alive=lambda: True,
        kafka_timeout_s=1.5,
        retry_after_s=7,
    )
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://c") as client:
            for attempt in range(3):  # the first, and later ones while it reconnects
                t0 = time.monotonic()
                resp = await client.post(
                    "/v1/events",
                    json=[event(f"e{attempt}"), {"event_id": "bad"}],
                    headers={"X-API-Key": "k"},
                )
                took = time.monotonic() - t0
                assert resp.status_code == 503 and took < 2.0, (resp.status_code, took)
                assert resp.headers["Retry-After"] == "7"
                body = resp.json()
                assert body["accepted"] == 0 and body["rejected"] == 2
                assert body["results"][0]["reason"] == "unavailable"
                assert body["results"][1]["reason"] != "unavailable"  # invalid stays invalid
    finally:
        await producer.stop()
    text = generate_latest(metrics.registry).decode()
    assert 'admuse_ingestion_http_events_total{outcome="unavailable"} 3.0' in text
    assert producer.unsent == 3 and producer.sent == 0
