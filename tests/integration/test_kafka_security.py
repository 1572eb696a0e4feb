"""TLS and SASL against a real broker: a TLS listener that requires a client certificate and
a SASL_SSL listener with PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 (tests/integration/tls_broker.py).

Every client factory, every service and the CLI connect over them; a wrong password, an
untrusted broker certificate and a missing client certificate each stop start-up at once with
an error that says which.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.cli.stack import Stack, warm_up_coordinators
from services.common.codec import SchemaRegistry
from services.common.kafka import ensure_topics, make_consumer, make_producer, wait_for_broker
from services.common.security import KafkaSecurityError
from services.common.settings import KafkaSettings
from services.common.topics import Topics
from tests.integration.ingestion_harness import TopicReader
from tests.integration.tls_broker import ROOT, TLSBroker, kafka_uuid, tls_broker
from tests.polling import eventually

pytestmark = pytest.mark.integration

EVENTS = SchemaRegistry.load().codec("AdEvent")


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSBroker]:
    b = tls_broker(tmp_path_factory.mktemp("tls-broker"))
    b.start()
    try:
        yield b
    finally:
        b.stop()


def _prefixed(kafka: KafkaSettings) -> KafkaSettings:
    return kafka.model_copy(update={"topic_prefix": f"s{uuid.uuid4().hex[:8]}."})


@pytest.mark.parametrize(
    "protocol,user",
    [
        ("SSL", None),
        ("SASL_SSL", "plain-user"),
        ("SASL_SSL", "scram256-user"),
        ("SASL_SSL", "scram512-user"),
    ],
)
async def test_clients_produce_and_consume(broker: TLSBroker, protocol: str, user: str) -> None:
    kafka = _prefixed(broker.settings(protocol, user))
    await wait_for_broker(kafka, 30)
    topics = Topics.from_settings(kafka)
    await ensure_topics(kafka, [topics.campaigns])
    producer = make_producer(kafka, transactional_id=f"{kafka.topic_prefix}tx")
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send(topics.campaigns.name, b"over-tls", key=b"k")
    finally:
        await producer.stop()
    consumer = make_consumer(kafka, topics.campaigns.name, group_id=f"{kafka.topic_prefix}g")
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=10_000)
        assert [r.value for rs in batch.values() for r in rs] == [b"over-tls"]
        await consumer.commit()
    finally:
        await consumer.stop()


@pytest.mark.parametrize(
    "protocol,user,over,message",
    [
        ("SASL_SSL", "scram512-user", {"sasl_password": "wrong"}, "SASL: Kafka at .* refused"),
        ("SASL_SSL", "plain-user", {"sasl_password": "wrong"}, "SASL: Kafka at .* refused"),
        ("SSL", None, {"ssl_cafile": "rogue-ca.pem"}, "certificate of Kafka at .* not trusted"),
        ("SSL", None, {"ssl_certfile": None, "ssl_keyfile": None}, "client certificate"),
    ],
)
async def test_refused_credentials_fail_at_once(
    broker: TLSBroker, protocol: str, user: str | None, over: dict[str, object], message: str
) -> None:
    if "ssl_cafile" in over:
        over = {"ssl_cafile": str(broker.certs / str(over["ssl_cafile"]))}
    kafka = broker.settings(protocol, user, **over)
    t0 = time.monotonic()
    with pytest.raises(KafkaSecurityError, match=message):
        await wait_for_broker(kafka, 60)
    assert time.monotonic() - t0 < 10  # not the 60 s deadline


def test_service_and_cli_refused_password_exit_with_the_reason(broker: TLSBroker) -> None:
    kafka = broker.settings("SASL_SSL", "scram256-user", sasl_password="wrong")
    env = {**os.environ, **broker.env(kafka), "ADMUSE_PSEUDONYM_SECRET": "s" * 32,
           "ADMUSE_INGESTION_API_KEYS": "k", "ADMUSE_INGESTION_HTTP_PORT": "0"}  # fmt: skip
    for cmd in (
        [sys.executable, "-m", "services.ingestion"],
        [sys.executable, "-m", "services.cli", "topics", "create"],
    ):
        t0 = time.monotonic()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0, out
        assert "refused user 'scram256-user' with SCRAM-SHA-256" in out, out[-3000:]
        assert "wrong" not in out.replace("sasl_password", "")  # the password is never shown
        assert time.monotonic() - t0 < 30, cmd


async def test_every_service_and_the_cli_over_sasl_ssl(broker: TLSBroker, tmp_path: Path) -> None:
    kafka = _prefixed(broker.settings("SASL_SSL", "scram512-user"))
    env = broker.env(kafka)
    cli = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "services.cli", "topics", "create"],
        cwd=ROOT, env={**os.environ, **env, "ADMUSE_KAFKA_TOPIC_PREFIX": kafka.topic_prefix},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stdout + cli.stderr
    await warm_up_coordinators(kafka)
    stack = Stack(tmp_path, kafka.bootstrap_servers, kafka.topic_prefix, extra_env=env)
    stack.start(ROOT)
    try:
        await asyncio.to_thread(stack.wait_ready, 180)
        trainer = stack.processes["trainer"]  # no HTTP port: its log says it consumes
        await eventually(
            lambda: "partitions_assigned" in trainer.tail(), 120, f"trainer\n{trainer.tail()}"
        )
        topics = Topics.from_settings(kafka)
        event = {
            "event_id": "tls-1", "type": "click", "occurred_at": int(time.time() * 1000),
            "campaign_id": "spring", "user_id": "u-1", "consent": {"personalization": True},
        }  # fmt: skip
        async with httpx.AsyncClient(timeout=10) as client:
            r = await client.post(
                f"http://127.0.0.1:{stack.ingestion_port}/v1/events",
                json=event,
                headers={"X-API-Key": stack.api_key},
            )
        assert r.status_code == 202, r.text
        async with TopicReader(kafka, topics.events.name) as events:
            await events.until(
                lambda rs: any(EVENTS.decode(x.value)["event_id"] == "tls-1" for x in rs),
                60,
                "the event through ingestion over SASL_SSL",
            )
        assert all(svc.alive for svc in stack.processes.values())
    finally:
        codes = stack.stop()
    logs = {n: s.tail(400) for n, s in stack.processes.items()}
    assert codes == dict.fromkeys(codes, 0), json.dumps(logs)[-4000:]


def test_cluster_ids_are_kafka_uuids_the_storage_tool_accepts() -> None:
    """A random cluster id whose text starts with '-' made `kafka-storage format -t` fail
    (1 in 64 broker starts); the ids are 16 random bytes in URL-safe base64, never '-' first."""
    import base64

    ids = [kafka_uuid() for _ in range(4000)]
    assert not [i for i in ids if i.startswith("-")]
    assert {len(base64.urlsafe_b64decode(i + "==")) for i in ids} == {16}
    assert len(set(ids)) == len(ids)
