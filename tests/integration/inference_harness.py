"""Helpers for the inference integration tests: run `python -m services.inference` as a
subprocess against the real broker, publish campaigns, creatives and models, read decisions.

The ONNX models are the tiny contract-following ones of tests/unit/inference/onnx_fixtures.py.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.common.codec import SchemaRegistry
from services.common.kafka import make_producer
from services.common.model_store import ModelStore
from services.common.settings import KafkaSettings
from services.common.signing import Signer, generate_key_pair
from services.common.topics import Topics
from services.common.watermark import WatermarkCodec
from tests.polling import eventually
from tests.unit.inference import onnx_fixtures

API_KEY = "test-key-1"
OTHER_KEY = "test-key-2"
SECRET = "test-pseudonym-secret"
REPO = Path(__file__).resolve().parents[2]
# A key pair per test run: models signed by SIGNER, inference trusts PUBLIC_KEY.
PRIVATE_KEY, PUBLIC_KEY, KEY_ID = generate_key_pair()
SIGNER = Signer(PRIVATE_KEY)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def campaign_record(campaign_id: str, **overrides: Any) -> dict[str, Any]:
    return onnx_fixtures.campaign(campaign_id=campaign_id, **overrides)


CATALOG = [
    {"headline": "Spring sale", "cta": "Buy now", "font_scale": 1.0,
     "background": "#ffffff", "text_color": "#000000"},
    {"headline": "New in", "cta": "Shop", "font_scale": 1.2,
     "background": "#112233", "text_color": "#ffffff"},
    {"headline": "Just for you", "cta": "Learn more", "font_scale": 0.9,
     "background": "#fafad2", "text_color": "#202020"},
]  # fmt: skip


def catalog_records(campaign_id: str) -> list[dict[str, Any]]:
    return [
        {"creative_id": f"{campaign_id}-c{i}", "campaign_id": campaign_id, "origin": "catalog",
         "name": f"catalog {i}", "attributes": attrs, "status": "live", "segment": None,
         "model_version": None, "predicted_reward": None, "prior_alpha": 1.0,
         "prior_beta": 1.0, "created_at": 0, "retired_at": None}
        for i, attrs in enumerate(CATALOG)
    ]  # fmt: skip


async def produce(
    kafka: KafkaSettings, topic: str, record_name: str, items: Iterable[tuple[str, Any]]
) -> None:
    """Write (key, record) pairs; a None record is a tombstone."""
    codec = SchemaRegistry.load().codec(record_name)
    producer = make_producer(kafka)
    await producer.start()
    try:
        for key, record in items:
            value = None if record is None else codec.encode(record)
            await producer.send_and_wait(topic, value=value, key=key.encode())
    finally:
        await producer.stop()


async def seed_campaign(
    kafka: KafkaSettings, topics: Topics, campaign_id: str, **overrides: Any
) -> list[dict[str, Any]]:
    creatives = catalog_records(campaign_id)
    await produce(
        kafka,
        topics.campaigns.name,
        "Campaign",
        [(campaign_id, campaign_record(campaign_id, **overrides))],
    )
    await produce(
        kafka, topics.creatives.name, "Creative", [(c["creative_id"], c) for c in creatives]
    )
    return creatives


def write_model(
    store_url: str,
    campaign_id: str,
    version: str,
    *,
    seed: int = 0,
    corrupt: bool = False,
    bad_signature: bool = False,
    signer: Signer | None = SIGNER,
    quality_passed: bool = True,
) -> dict[str, Any]:
    """Put a model's three artifacts and their signature in the store; return its
    ModelPublished record.

    `corrupt` overwrites the generator's bytes after the sha256 was recorded;
    `bad_signature` names the reward model's output `score` instead of `p_reward`;
    `signer=None` publishes no signature; `quality_passed=False` a failed gate verdict.
    """
    store = ModelStore(store_url)
    meta = onnx_fixtures.metadata(version, campaign_id=campaign_id)
    meta["quality"] = {"passed": quality_passed, "reasons": [] if quality_passed else ["bad"]}
    out = "score" if bad_signature else "p_reward"
    blobs = {
        "generator": onnx_fixtures.generator(seed),
        "reward_model": onnx_fixtures.reward_model(out_name=out),
        "metadata": json.dumps(meta).encode(),
    }
    names = {"generator": "generator.onnx", "reward_model": "reward_model.onnx",
             "metadata": "metadata.json"}  # fmt: skip
    files = {role: (names[role], data) for role, data in blobs.items()}
    if signer is not None:
        files["signature"] = ("signature.json", signer.sign(campaign_id, version, files))
    artifacts = []
    for role, (name, data) in files.items():
        ref = store.put(f"{campaign_id}/{version}/{name}", data)
        artifacts.append({"name": role, "uri": ref.uri, "sha256": ref.sha256, "size": ref.size})
        if corrupt and role == "generator":
            store.put(f"{campaign_id}/{version}/{name}", data[:-8] + b"\x00" * 8)
    return {"model_name": campaign_id, "campaign_id": campaign_id, "version": version,
            "artifacts": artifacts, "metrics": {}, "training_rows": 10, "seed": seed,
            "published_at": int(time.time() * 1000)}  # fmt: skip


async def publish_model(kafka: KafkaSettings, topics: Topics, record: dict[str, Any]) -> float:
    await produce(kafka, topics.models.name, "ModelPublished", [(record["model_name"], record)])
    return time.time()


class DecisionReader:
    """Follows admuse.decisions from the beginning, collecting decoded records."""

    def __init__(self, kafka: KafkaSettings, topic: str) -> None:
        self._kafka = kafka
        self._topic = topic
        self._codec = SchemaRegistry.load().codec("Decision")
        self._control = WatermarkCodec(SchemaRegistry.load())
        self.records: list[dict[str, Any]] = []
        self.offsets: list[tuple[int, int]] = []  # (partition, offset) of each record
        self.watermarks: list[tuple[int, int, dict[str, Any]]] = []  # (partition, offset, wm)
        self.partitions: dict[str, int] = {}
        self._consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> DecisionReader:
        self._consumer = AIOKafkaConsumer(
            **self._kafka.client_kwargs(),
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        await self._consumer.start()
        cluster = await self._consumer._client.fetch_all_metadata()
        parts = [
            TopicPartition(self._topic, p)
            for p in sorted(cluster.partitions_for_topic(self._topic) or [])
        ]
        self._consumer.assign(parts)
        await self._consumer.seek_to_beginning(*parts)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._consumer is not None
        await self._consumer.stop()

    async def poll(self) -> None:
        assert self._consumer is not None
        batches = await self._consumer.getmany(timeout_ms=200)
        for tp, recs in batches.items():
            for r in recs:
                if self._control.is_watermark(r.value):  # time, not a decision
                    self.watermarks.append((tp.partition, r.offset, self._control.decode(r.value)))
                    continue
                self.offsets.append((tp.partition, r.offset))
                rec = self._codec.decode(r.value)
                self.records.append(rec)
                self.partitions[rec["decision_id"]] = tp.partition

    async def wait_for(
        self, cond: Callable[[list[dict[str, Any]]], bool], timeout_s: float = 20.0
    ) -> list[dict[str, Any]]:

        async def met() -> bool:
            if cond(self.records):
                return True
            await self.poll()
            return cond(self.records)

        await eventually(met, timeout_s, "the decisions condition", every_s=0)
        return self.records


class InferenceProcess:
    """`python -m services.inference` with its own ports, spool folder and log file."""

    def __init__(self, kafka: KafkaSettings, workdir: Path, **env: str) -> None:
        self.http_port = free_port()
        self.grpc_port = free_port()
        self.workdir = workdir
        self.log_path = workdir / "inference.log"
        self.env = {
            **os.environ,
            "ADMUSE_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "ADMUSE_KAFKA_TOPIC_PREFIX": kafka.topic_prefix,
            "ADMUSE_INFERENCE_API_KEYS": f"{API_KEY}, {OTHER_KEY}",
            "ADMUSE_PSEUDONYM_SECRET": SECRET,
            "ADMUSE_INFERENCE_TRUSTED_KEYS": PUBLIC_KEY,
            "ADMUSE_MODEL_STORE_URL": f"file://{workdir / 'store'}",
            "ADMUSE_INFERENCE_HTTP_HOST": "127.0.0.1",
            "ADMUSE_INFERENCE_HTTP_PORT": str(self.http_port),
            "ADMUSE_INFERENCE_GRPC_PORT": str(self.grpc_port),
            "ADMUSE_INFERENCE_SPOOL_DIR": str(workdir / "spool"),
            "ADMUSE_INFERENCE_N_GENERATE": "64",
            "ADMUSE_LOG_FORMAT": "json",
            **env,
        }
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.store_url = self.env["ADMUSE_MODEL_STORE_URL"]
        self._proc: subprocess.Popen[bytes] | None = None

    def _spawn(self) -> subprocess.Popen[bytes]:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "services.inference"],
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    async def start(self, timeout_s: float = 60.0) -> InferenceProcess:
        self._proc = self._spawn()
        async with httpx.AsyncClient(base_url=self.url, timeout=2.0) as client:

            async def ready() -> bool:
                assert self._proc is not None
                if self._proc.poll() is not None:
                    raise AssertionError(
                        f"inference exited {self._proc.returncode}:\n" + self.log_tail()
                    )
                try:
                    return (await client.get("/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            try:
                await eventually(ready, timeout_s, "inference /readyz", every_s=0.1)
            except AssertionError as exc:
                raise AssertionError(f"{exc}:\n{self.log_tail()}") from None
        return self

    def stop(self, timeout_s: float = 20.0) -> int:
        if self._proc is None or self._proc.poll() is not None:
            return self._proc.returncode if self._proc else 0
        self._proc.send_signal(signal.SIGTERM)
        try:
            return self._proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
            raise AssertionError("inference did not stop on SIGTERM:\n" + self.log_tail()) from None

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs (memory is lost, the spool file stays)."""
        assert self._proc is not None
        self._proc.kill()
        self._proc.wait()

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return "(no log)"

    def log_lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out
