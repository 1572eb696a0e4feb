"""`admuse erase --user ...` publishes the user's pseudonym (never the raw id) to admuse.erasure."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

from services.common.codec import SchemaRegistry
from services.common.privacy import pseudonymize
from services.common.settings import KafkaSettings
from services.common.topics import Topics
from tests.integration.ingestion_harness import ROOT, TopicReader

pytestmark = pytest.mark.integration

ERASURE = SchemaRegistry.load().codec("ErasureRequest")


async def _admuse(kafka: KafkaSettings, *args: str, secret: str | None) -> tuple[int, str, str]:
    env = {
        **os.environ,
        "ADMUSE_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "ADMUSE_KAFKA_TOPIC_PREFIX": kafka.topic_prefix,
    }
    env.pop("ADMUSE_PSEUDONYM_SECRET", None)
    if secret is not None:
        env["ADMUSE_PSEUDONYM_SECRET"] = secret
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from services.cli import app; app()",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_erase_publishes_pseudonym_only(kafka: KafkaSettings, topics: Topics) -> None:
    code, out, err = await _admuse(
        kafka, "erase", "--user", "app-user-42", "--user", "app-user-43", secret="s3"
    )
    assert code == 0, err
    async with TopicReader(kafka, topics.erasure.name) as reader:
        await reader.until(lambda r: len(r) >= 2, 30, "two erasure requests")
    requests = [ERASURE.decode(r.value) for r in reader.records]
    expected = {pseudonymize(b"s3", "app-user-42"), pseudonymize(b"s3", "app-user-43")}
    assert {r["user_id"] for r in requests} == expected
    assert {r.key.decode() for r in reader.records} == expected
    assert all(r["reason"] == "gdpr-art17" and r["request_id"] for r in requests)
    assert all(b"app-user-4" not in r.value for r in reader.records)
    assert "app-user-42" not in out and all(p in out for p in expected)


async def test_erase_refuses_without_secret(kafka: KafkaSettings, topics: Topics) -> None:
    code, _out, err = await _admuse(kafka, "erase", "--user", "someone", secret=None)
    assert code == 2 and "ADMUSE_PSEUDONYM_SECRET" in err
