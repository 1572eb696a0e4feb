"""Helpers for the features integration tests: the worker as a subprocess, records, readers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
from aiokafka import TopicPartition

from services.common.codec import SchemaRegistry
from services.common.health import RESTART_EXIT_CODE
from services.common.kafka import make_consumer, make_producer, partitions_of
from services.common.settings import KafkaSettings
from services.common.watermark import WatermarkCodec
from tests.polling import eventually

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FeaturesWorker:
    """`python -m services.features` in a subprocess, with its own port and state dir."""

    def __init__(self, kafka: KafkaSettings, state_dir: Path, **env: str) -> None:
        self.port = free_port()
        self.log_path = state_dir / "worker.log"
        self.env = {
            **os.environ,
            "ADMUSE_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "ADMUSE_KAFKA_TOPIC_PREFIX": kafka.topic_prefix,
            "ADMUSE_FEATURES_WEB_PORT": str(self.port),
            "ADMUSE_FEATURES_STATE_DIR": str(state_dir),
            "ADMUSE_LOG_FORMAT": "json",
            "PYTHONUNBUFFERED": "1",  # a SIGKILLed worker's last lines reach the log
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, cwd: Path | None = None) -> None:
        """Start the worker (`cwd` is the supervisor's signature: it always runs in ROOT)."""
        self.starts += 1
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.features"],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    async def wait_ready(self, timeout_s: float = 90.0, *, processing: bool = True) -> None:
        """Until the worker processes: `/readyz` says it holds partitions, is not rebalancing
        and has recovered its tables (a restarted worker first waits out its killed
        predecessor's session). `processing=False`: only until it serves HTTP (it may still
        be joining the group)."""
        path = "/readyz" if processing else "/metrics"
        async with httpx.AsyncClient() as client:

            async def ready() -> bool:
                code = None if self.proc is None else self.proc.poll()
                if code == RESTART_EXIT_CODE:
                    return False  # it asked to be started again (a supervisor does)
                if code is not None:
                    raise RuntimeError(f"worker exited with {self.proc.returncode}: {self.tail()}")
                try:
                    return (await client.get(self.url(path), timeout=2)).status_code == 200
                except httpx.HTTPError:
                    return False

            try:
                await eventually(ready, timeout_s, f"the worker's {path}")
            except AssertionError as exc:
                raise TimeoutError(f"{exc}: {self.tail()}") from None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def metric(self, name: str) -> float:
        """Sum of a metric's samples (all labels) from /metrics."""
        async with httpx.AsyncClient() as client:
            text = (await client.get(self.url("/metrics"), timeout=5)).text
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and line[len(name)] in " {":
                total += float(line.rsplit(" ", 1)[1])
        return total

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""


def decision(
    campaign: str,
    creative: str,
    *,
    user: str = "u1",
    window_ms: int = 2000,
    segment: str = "*",
    decided_at: int | None = None,
    decision_id: str | None = None,
) -> dict[str, Any]:
    return {
        "decision_id": decision_id or uuid.uuid4().hex,
        "decided_at": decided_at or int(time.time() * 1000),
        "campaign_id": campaign,
        "segment": segment,
        "context": {},
        "user_id": user,
        "creative_id": creative,
        "propensity": 0.5,
        "arm": "optimized",
        "policy": "thompson",
        "policy_version": "v1",
        "model_version": None,
        "attribution_window_ms": window_ms,
        "candidates": 2,
    }


def event(
    d: dict[str, Any],
    kind: str = "click",
    *,
    event_id: str | None = None,
    occurred_at: int | None = None,
    value: float | None = None,
) -> dict[str, Any]:
    return {
        "event_id": event_id or uuid.uuid4().hex,
        "type": kind,
        "occurred_at": occurred_at or int(time.time() * 1000),
        "campaign_id": d["campaign_id"],
        "creative_id": d["creative_id"],
        "decision_id": d["decision_id"],
        "user_id": d["user_id"],
        "consent": {"personalization": True},
        "context": {},
        "value": value,
        "sentiment": None,
        "source": "test",
        "ingested_at": None,
    }


class WatermarkSource:
    """Stands in for ingestion when a test writes AdEvents straight into admuse.events: every
    `interval_s`, a Watermark (now - skew) into every partition, from a producer of its own,
    so it follows every event the test's sends had acknowledged (events stamped within the
    skew of being sent). Pass the test's own `producer` to order it after sends not yet
    acknowledged too."""

    def __init__(
        self,
        kafka: KafkaSettings,
        topic: str,
        skew_ms: int = 500,
        interval_s: float = 0.1,
        producer: Any = None,
    ) -> None:
        self.kafka, self.topic = kafka, topic
        self.producer = producer
        self.skew_ms, self.interval_s = skew_ms, interval_s
        self.codec = WatermarkCodec(SchemaRegistry.load())
        self.paused = False
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> WatermarkSource:
        producer = self.producer
        if producer is None:
            producer = make_producer(self.kafka)
            await producer.start()
        partitions = sorted(await producer.partitions_for(self.topic))
        self._task = asyncio.create_task(self._run(producer, partitions))
        return self

    async def _run(self, producer: Any, partitions: list[int]) -> None:
        try:
            while True:
                if not self.paused:
                    now = int(time.time() * 1000)
                    value = self.codec.encode("test-source", 1, {0: now - self.skew_ms - 1}, now)
                    sent = [
                        await producer.send(self.topic, value, key=b"test-source", partition=p)
                        for p in partitions
                    ]
                    await asyncio.gather(*sent)
                await asyncio.sleep(self.interval_s)  # the source's pace, not a wait
        finally:
            if self.producer is None:
                await producer.stop()

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class TopicReader:
    """Reads a topic from the beginning (no group) and keeps every decoded record."""

    def __init__(
        self, kafka: KafkaSettings, topic: str, record: str, registry: SchemaRegistry
    ) -> None:
        self.kafka, self.topic = kafka, topic
        self.codec = registry.codec(record)
        self.records: list[tuple[str, dict[str, Any], int]] = []  # key, value, record ts (ms)
        self._consumer: Any = None

    async def __aenter__(self) -> TopicReader:
        tps = await partitions_of(self.kafka, [self.topic], timeout_s=0)
        self._consumer = make_consumer(self.kafka, group_id=None)
        await self._consumer.start()
        self._consumer.assign(tps)
        await self._consumer.seek_to_beginning(*tps)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def poll(self, timeout_ms: int = 200) -> None:
        batch = await self._consumer.getmany(timeout_ms=timeout_ms)
        for recs in batch.values():
            for r in recs:
                self.records.append((r.key.decode(), self.codec.decode(r.value), r.timestamp))

    async def until(self, predicate: Any, timeout_s: float = 30.0) -> None:
        """Poll until `predicate(self)` is true or fail after the deadline."""

        async def met() -> bool:
            if predicate(self):
                return True
            await self.poll()
            return bool(predicate(self))

        await eventually(met, timeout_s, f"the condition on {self.topic}", every_s=0)

    def by_key(self) -> dict[str, dict[str, Any]]:
        return {k: v for k, v, _ in self.records}

    def values(self) -> list[dict[str, Any]]:
        return [v for _, v, _ in self.records]

    def for_key(self, key: str) -> list[dict[str, Any]]:
        return [v for k, v, _ in self.records if k == key]


async def produce(
    kafka: KafkaSettings, topic: str, codec: Any, items: Iterable[tuple[str, dict[str, Any]]]
) -> None:
    from services.common.kafka import make_producer

    producer = make_producer(kafka)
    await producer.start()
    try:
        for key, value in items:
            await producer.send(topic, key=key.encode(), value=codec.encode(value))
        await producer.flush()
    finally:
        await producer.stop()


async def trace_decision(kafka: KafkaSettings, decision_id: str, app_id: str) -> str:
    """Where one decision went, read back from Kafka: its record on the decisions topic, its
    events on the repartition topic, its join-table changelog records (in order) and the
    worker group's committed offsets of those partitions. For kill-test failures."""
    from services.common.kafka import make_admin

    prefix = kafka.topic_prefix
    group = f"{prefix}{app_id}"
    topics = {
        "decisions": f"{prefix}admuse.decisions",
        "by-decision": f"{prefix}{app_id}-events-by-decision",
        "changelog": f"{prefix}{app_id}-join-changelog",
    }
    wanted = decision_id.encode()
    found: list[str] = []
    tps: list[TopicPartition] = []
    consumer = make_consumer(kafka, group_id=None, isolation_level="read_uncommitted")
    await consumer.start()
    try:
        for label, topic in topics.items():
            try:
                topic_tps = await partitions_of(kafka, [topic], timeout_s=0)
            except LookupError:
                found.append(f"{label}: no such topic {topic}")
                continue
            consumer.assign(topic_tps)
            await consumer.seek_to_beginning(*topic_tps)
            ends = await consumer.end_offsets(topic_tps)
            while [tp for tp in topic_tps if await consumer.position(tp) < ends[tp]]:
                batch = await consumer.getmany(timeout_ms=500)
                if not batch:
                    break
                for tp, recs in batch.items():
                    for r in recs:
                        if r.key is not None and wanted in r.key:
                            if r.value is None:
                                value = "tombstone"
                            elif label == "changelog":
                                text = r.value.decode(errors="replace")
                                value = text if len(text) < 400 else f"{text[:150]} … {text[-250:]}"
                            else:
                                value = f"{len(r.value)} bytes"
                            found.append(
                                f"{label}[{tp.partition}]@{r.offset} ts={r.timestamp} "
                                f"key={r.key.decode(errors='replace')} {value}"
                            )
                            tps.append(tp)
    finally:
        await consumer.stop()
    admin = make_admin(kafka)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group, partitions=sorted(set(tps)))
    finally:
        await admin.close()
    found.append(
        "committed: "
        + ", ".join(
            f"{tp.topic.rsplit('.', 1)[-1]}[{tp.partition}]={m.offset}"
            for tp, m in committed.items()
        )
    )
    return "\n".join(found)
