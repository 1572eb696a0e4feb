"""Run `python -m services.ingestion` as a subprocess against the real broker, read topics back.

Used by tests/integration/test_ingestion*.py and bench/bench_ingestion.py.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import httpx
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord
from prometheus_client.parser import text_string_to_metric_families

from services.common.codec import SchemaRegistry
from services.common.kafka import make_consumer
from services.common.settings import KafkaSettings
from services.common.watermark import WatermarkCodec
from tests.polling import eventually

ROOT = Path(__file__).resolve().parents[2]
SECRET = "integration-test-secret"
API_KEY = "test-key-1"
_WATERMARKS = WatermarkCodec(SchemaRegistry.load())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class IngestionProcess:
    """One ingestion service process; restartable with the same instance id and port."""

    def __init__(self, kafka: KafkaSettings, log_path: Path, **env: str) -> None:
        self.kafka = kafka
        self.port = free_port()
        self.log_path = log_path
        self.env = {
            **os.environ,
            "ADMUSE_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "ADMUSE_KAFKA_TOPIC_PREFIX": kafka.topic_prefix,
            "ADMUSE_PSEUDONYM_SECRET": SECRET,
            "ADMUSE_INGESTION_API_KEYS": f"{API_KEY},other-key",
            "ADMUSE_INGESTION_HTTP_PORT": str(self.port),
            "ADMUSE_INGESTION_HTTP_HOST": "127.0.0.1",
            "ADMUSE_LOG_FORMAT": "json",
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.ingestion"],
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    async def wait_ready(self, timeout_s: float = 90.0) -> None:
        async def ready() -> bool:
            if not self.alive:
                raise AssertionError(f"ingestion exited early:\n{self.log_tail()}")
            try:
                async with httpx.AsyncClient(timeout=2) as client:
                    return (await client.get(f"{self.url}/readyz")).status_code == 200
            except httpx.HTTPError:
                return False

        await eventually(ready, timeout_s, f"ingestion /readyz\n{self.log_tail()}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self._close_log()

    def stop(self, timeout_s: float = 30.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._close_log()
        return self.proc.returncode

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def worker_pids(self) -> list[int]:
        """The transform worker processes of the latest start (from its log)."""
        pids: list[int] = []
        for line in self.log_tail(200_000).splitlines():
            if '"transform_workers_running"' in line:
                pids = json.loads(line)["pids"]
        return pids

    async def metrics(self) -> dict[str, float]:
        """Prometheus samples by 'name{label="v",...}' (labels sorted), counters as _total."""
        async with httpx.AsyncClient(timeout=5) as client:
            text = (await client.get(f"{self.url}/metrics")).text
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
                out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
        return out


async def raw_progress(
    kafka: KafkaSettings, topic: str, partitions: int, group: str
) -> tuple[int, int]:
    """(records the ingestion group committed, records on the raw topic), over its partitions."""
    consumer = make_consumer(kafka, group_id=group)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        ends = await consumer.end_offsets(tps)
        committed = [await consumer.committed(tp) or 0 for tp in tps]
        return sum(committed), sum(ends.values())
    finally:
        await consumer.stop()


def sum_metric(samples: dict[str, float], name: str, **labels: str) -> float:
    """Sum of a metric's samples whose labels include `labels`."""
    total = 0.0
    for key, value in samples.items():
        base, _, rest = key.partition("{")
        if base != name:
            continue
        if all(f'{k}="{v}"' in rest for k, v in labels.items()):
            total += value
    return total


class TopicReader:
    """Reads a whole topic from the beginning (read_committed), incrementally. Watermark
    control records are kept apart (`watermarks`), as every reader of a data topic must."""

    def __init__(self, kafka: KafkaSettings, topic: str) -> None:
        self.kafka = kafka
        self.topic = topic
        self.records: list[ConsumerRecord[Any, Any]] = []
        self.watermarks: list[ConsumerRecord[Any, Any]] = []
        self._consumer = make_consumer(kafka, group_id=None, max_poll_records=5000)
        self._tps: list[TopicPartition] = []

    async def __aenter__(self) -> TopicReader:
        await self._consumer.start()
        partitions = self._consumer.partitions_for_topic(self.topic)
        if not partitions:
            await self._consumer._client.force_metadata_update()
            partitions = self._consumer.partitions_for_topic(self.topic)
        assert partitions, f"topic {self.topic} does not exist"
        self._tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        self._consumer.assign(self._tps)
        await self._consumer.seek_to_beginning(*self._tps)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def poll(self) -> list[ConsumerRecord[Any, Any]]:
        """Read what is committed now, up to the last stable offset; return the new records."""
        ends = await self._consumer.end_offsets(self._tps)
        new: list[ConsumerRecord[Any, Any]] = []
        for _ in range(200):
            positions = [await self._consumer.position(tp) for tp in self._tps]
            if all(pos >= ends[tp] for pos, tp in zip(positions, self._tps, strict=True)):
                break
            batch = await self._consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for rec in records:
                    if _WATERMARKS.is_watermark(rec.value):
                        self.watermarks.append(rec)
                    else:
                        new.append(rec)
        self.records.extend(new)
        return new

    async def until(
        self, predicate: Callable[[list[Any]], bool], timeout_s: float, what: str
    ) -> None:
        async def check() -> bool:
            await self.poll()
            return predicate(self.records)

        await eventually(check, timeout_s, what)
