"""`admuse tail` against the real broker: Avro decoded by writer schema (legacy byte order too),
JSON and foreign bytes shown as they are, headers and keys kept, following new records."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import pytest

from services.common.codec import SchemaRegistry
from services.common.kafka import make_producer
from services.common.settings import KafkaSettings
from services.common.topics import Topics

pytestmark = pytest.mark.integration

REGISTRY = SchemaRegistry.load()
ROOT = Path(__file__).resolve().parents[2]


def _env(kafka: KafkaSettings) -> dict[str, str]:
    return {**os.environ, "ADMUSE_KAFKA_TOPIC_PREFIX": kafka.topic_prefix}


async def _admuse(kafka: KafkaSettings, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", "tail", *args,
        cwd=ROOT, env=_env(kafka), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def test_tail_decodes_and_follows(kafka: KafkaSettings, topics: Topics) -> None:
    events = REGISTRY.codec("AdEvent", 1)
    ev = {
        "event_id": "t-1", "type": "click", "occurred_at": 1_700_000_000_000,
        "campaign_id": "spring", "user_id": "u", "consent": {}, "context": {},
    }  # fmt: skip
    avro = events.encode(ev)
    legacy = avro[:2] + avro[2:10][::-1] + avro[10:]
    producer = make_producer(kafka)
    await producer.start()
    try:
        for value in (avro, legacy, b'{"event_id": "t-json"}', b"\xff\x00junk", avro[:12]):
            await producer.send_and_wait(
                topics.events_raw.name, value, key=b"k", headers=[("trace-id", b"abc")]
            )
        proc = await _admuse(kafka, "events.raw", "--from-beginning", "--no-follow")
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
        lines = [json.loads(x) for x in out.decode().splitlines()]
        assert [x["value_format"] for x in lines] == [  # (stderr: {err!r})
            "avro:AdEvent.v1", "avro:AdEvent.v1", "json", "bytes", "bytes",
        ], err.decode()  # fmt: skip
        assert lines[0]["value"] == lines[1]["value"]
        assert lines[0]["value"]["occurred_at"].startswith("2023-11-14T22:13:20")
        assert lines[2]["value"] == {"event_id": "t-json"}
        assert "error" not in lines[3] and "ends early" in lines[4]["error"]
        assert {x["key"] for x in lines} == {"k"} and lines[0]["headers"] == {"trace-id": "abc"}

        follower = await _admuse(kafka, "decisions", "--max", "1")
        # one Decision per try until the follower has printed one and exited (--max 1)
        decision = REGISTRY.codec("Decision")
        started = time.monotonic()
        while follower.returncode is None and time.monotonic() - started < 60:
            value = {
                "decision_id": "d-1", "decided_at": 1, "campaign_id": "c", "segment": "*",
                "context": {}, "user_id": "p", "creative_id": "cr", "propensity": 0.5,
                "arm": "optimized", "policy": "thompson", "policy_version": "v",
                "model_version": "m", "attribution_window_ms": 1000, "candidates": 2,
            }  # fmt: skip
            await producer.send_and_wait(topics.decisions.name, decision.encode(value), key=b"d-1")
            try:
                await asyncio.wait_for(follower.wait(), 2)
            except TimeoutError:
                continue
        out, err = await follower.communicate()
        assert follower.returncode == 0, err.decode()
        (line,) = [json.loads(x) for x in out.decode().splitlines()]
        assert line["value"]["decision_id"] == "d-1" and line["topic"] == topics.decisions.name
    finally:
        await producer.stop()
