"""Trainer against the real broker: rewards in → ModelPublished out, artifacts verify; a
restart resumes from the persisted buffer, or rebuilds it from the topic when the file is
gone; `admuse train` publishes on demand."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from services.common.codec import SchemaRegistry
from services.common.kafka import make_consumer, make_producer
from services.common.model_store import ModelStore
from services.common.settings import KafkaSettings
from services.common.signing import TrustedKeys, generate_key_pair
from services.common.topics import Topics
from services.trainer.synthetic import synthetic_campaign, synthetic_catalog, synthetic_rewards
from tests.polling import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SIGNING_KEY, PUBLIC_KEY, _ = generate_key_pair()


def _env(kafka: KafkaSettings, tmp: Path) -> dict[str, str]:
    return {
        **os.environ,
        "ADMUSE_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "ADMUSE_KAFKA_TOPIC_PREFIX": kafka.topic_prefix,
        "ADMUSE_MODEL_STORE_URL": f"file://{tmp}/store",
        "ADMUSE_LOG_FORMAT": "json",
        "ADMUSE_TRAINER_PROFILE": "small",
        "ADMUSE_TRAINER_GAN_STEPS": "40",
        # Retrain on the clock only (3 s after the first new reward: every reward produced
        # before the start has been read by then), so each model's rows are known exactly.
        "ADMUSE_TRAINER_RETRAIN_MIN_NEW_POSITIVES": "1000000",
        "ADMUSE_TRAINER_RETRAIN_SHIFT_MIN_IMPRESSIONS": "1000000",
        "ADMUSE_TRAINER_RETRAIN_FLOOR_MIN_S": "3",
        "ADMUSE_TRAINER_RETRAIN_EVERY_MINUTES": "0.05",
        "ADMUSE_TRAINER_MIN_ROWS": "500",
        "ADMUSE_TRAINER_BUFFER_PATH": str(tmp / "buffer.json.gz"),
        "ADMUSE_TRAINER_SIGNING_KEY": SIGNING_KEY,
        # 40 GAN steps leave the generator untrained (condition fidelity at chance), and the
        # synthetic rewards' signal is weak enough that a 2,500-row reward model can tie the
        # base rate's held-out log-loss (a CI run refused one at 0.37101 vs 0.37101): this
        # file tests the Kafka plumbing, tests/unit/trainer/test_gate.py tests the gate.
        "ADMUSE_TRAINER_GATE_MIN_CONDITION_MARGIN": "-1",
        "ADMUSE_TRAINER_GATE_MAX_LOGLOSS_RATIO": "1.5",
        "ADMUSE_TRAINER_GATE_MIN_AUC_MARGIN": "0",
    }


async def _produce(
    kafka: KafkaSettings,
    registry: SchemaRegistry,
    topic: str,
    record: str,
    items: list[dict[str, Any]],
    key: str,
) -> None:
    codec = registry.codec(record)
    producer = make_producer(kafka)
    await producer.start()
    try:
        for item in items:
            await producer.send(topic, codec.encode(item), key=item[key].encode())
        await producer.flush()
    finally:
        await producer.stop()


async def _models(
    kafka: KafkaSettings,
    registry: SchemaRegistry,
    topic: str,
    count: int,
    deadline_s: float,
    proc: subprocess.Popen[bytes] | None = None,
) -> list[dict[str, Any]]:
    """Read admuse.models from the start until `count` records arrived (or fail)."""
    codec = registry.codec("ModelPublished")
    consumer = make_consumer(kafka, topic, group_id=None)
    await consumer.start()
    out: list[dict[str, Any]] = []

    async def read_more() -> bool:
        assert proc is None or proc.poll() is None, "trainer exited"
        for msgs in (await consumer.getmany(timeout_ms=500)).values():
            out.extend(codec.decode(m.value) for m in msgs)
        return len(out) >= count

    try:
        await eventually(read_more, deadline_s, f"{count} models published", every_s=0)
    finally:
        await consumer.stop()
    return out


def _verify(record: dict[str, Any], store: ModelStore, rows: int) -> dict[str, Any]:
    assert record["model_name"] == record["campaign_id"] == "spring"
    assert record["training_rows"] == rows and record["seed"] == 7
    arts = {a["name"]: a for a in record["artifacts"]}
    assert set(arts) == {"generator", "reward_model", "metadata", "signature"}
    data = {n: store.get(a["uri"], a["sha256"]) for n, a in arts.items()}
    assert all(len(data[n]) == arts[n]["size"] for n in arts)
    signed = TrustedKeys.parse(PUBLIC_KEY).verify(
        data["signature"], record["campaign_id"], record["version"]
    )
    assert {n: e["sha256"] for n, e in signed.items()} == {
        n: a["sha256"] for n, a in arts.items() if n != "signature"
    }
    meta = json.loads(data["metadata"])
    assert meta["version"] == record["version"] and meta["training_rows"] == rows
    import onnxruntime as ort

    gen = ort.InferenceSession(data["generator"], providers=["CPUExecutionProvider"])
    n_seg = len(meta["segments"])
    out = gen.run(
        None,
        {
            "noise": np.zeros((3, meta["noise_dim"]), np.float32),
            "segment": np.eye(n_seg, dtype=np.float32)[:3],
            "gumbel": np.zeros((3, meta["gumbel_dim"]), np.float32),
        },
    )[0]
    assert out.shape == (3, meta["creative_dim"])
    assert "reward_logloss" in record["metrics"] and "fidelity_mean" in record["metrics"]
    return meta


def _spawn(cmd: list[str], env: dict[str, str], log: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def _stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=60)


async def test_rewards_in_model_out_and_restart_resumes(
    kafka: KafkaSettings, topics: Topics, registry: SchemaRegistry, tmp_path: Path
) -> None:
    now_ms = int(time.time() * 1000)
    catalog = synthetic_catalog(created_at_ms=now_ms)
    await _produce(
        kafka,
        registry,
        topics.campaigns.name,
        "Campaign",
        [synthetic_campaign(updated_at_ms=now_ms)],
        "campaign_id",
    )
    await _produce(kafka, registry, topics.creatives.name, "Creative", catalog, "creative_id")
    rewards = synthetic_rewards(catalog, 2500, start_ms=now_ms - 3600_000, step_ms=100)
    await _produce(kafka, registry, topics.rewards.name, "Reward", rewards[:2000], "decision_id")
    # A record that is not a Reward: skipped, never fatal.
    producer = make_producer(kafka)
    await producer.start()
    await producer.send_and_wait(topics.rewards.name, b"not avro", key=b"junk")
    await producer.stop()

    env = _env(kafka, tmp_path)
    store = ModelStore(env["ADMUSE_MODEL_STORE_URL"])
    log = (tmp_path / "trainer.log").open("wb")
    cmd = [sys.executable, "-m", "services.trainer"]
    proc = _spawn(cmd, env, log)
    try:
        first = await _models(kafka, registry, topics.models.name, 1, 150, proc)
        _verify(first[0], store, 2000)
        assert _stop(proc) == 0
        saved = json.loads(gzip.decompress((tmp_path / "buffer.json.gz").read_bytes()))
        assert len(saved["campaigns"]["spring"]) == 2000
        assert sum(saved["offsets"][topics.rewards.name].values()) == 2001

        # Restart: resumes from the saved buffer, 500 new rewards + 1000 replayed ones
        # (duplicates) make a model of 2500 rows, not 3500.
        await _produce(
            kafka, registry, topics.rewards.name, "Reward", rewards[1000:2500], "decision_id"
        )
        proc = _spawn(cmd, env, log)
        second = await _models(kafka, registry, topics.models.name, 2, 150, proc)
        meta = _verify(second[1], store, 2500)
        assert second[1]["version"] > second[0]["version"]
        assert meta["training_rows"] == 2500

        # Without the buffer file, the trainer rebuilds it from admuse.rewards.
        assert _stop(proc) == 0
        (tmp_path / "buffer.json.gz").unlink()
        proc = _spawn(cmd, env, log)
        third = await _models(kafka, registry, topics.models.name, 3, 150, proc)
        _verify(third[2], store, 2500)
    finally:
        if proc.poll() is None:
            _stop(proc)
        log.close()
    lines = [
        json.loads(x)
        for x in (tmp_path / "trainer.log").read_text().splitlines()
        if x.startswith("{")
    ]
    assert any(x.get("event") == "trainer_starting" and x.get("device") == "cpu" for x in lines)
    assert any(x.get("event") == "record_skipped" for x in lines)
    assert any(x.get("event") == "training_buffer_loaded" for x in lines)
    assert any(x.get("event") == "training_buffer_rebuilt" for x in lines)


# Enough rows that the reward model beats the base rate on held-out data (the quality gate
# refuses a model that does not, and 1,200 rows of eight creatives sometimes did not).
N_ON_DEMAND = 3000


async def test_admuse_train_publishes_on_demand(
    kafka: KafkaSettings, topics: Topics, registry: SchemaRegistry, tmp_path: Path
) -> None:
    now_ms = int(time.time() * 1000)
    catalog = synthetic_catalog(n=8, created_at_ms=now_ms)
    await _produce(
        kafka,
        registry,
        topics.campaigns.name,
        "Campaign",
        [synthetic_campaign(updated_at_ms=now_ms)],
        "campaign_id",
    )
    await _produce(kafka, registry, topics.creatives.name, "Creative", catalog, "creative_id")
    await _produce(
        kafka,
        registry,
        topics.rewards.name,
        "Reward",
        synthetic_rewards(catalog, N_ON_DEMAND, start_ms=now_ms - 600_000, step_ms=100),
        "decision_id",
    )
    env = _env(kafka, tmp_path)
    cli = [sys.executable, "-c", "from services.cli import app; app()", "train"]
    done = await asyncio.to_thread(
        subprocess.run,
        [*cli, "--campaign", "spring", "--steps", "30"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
    text = done.stdout.decode()
    assert f"{N_ON_DEMAND} rewards" in text and "reward_auc" in text
    (record,) = await _models(kafka, registry, topics.models.name, 1, 30)
    _verify(record, ModelStore(env["ADMUSE_MODEL_STORE_URL"]), N_ON_DEMAND)

    missing = await asyncio.to_thread(
        subprocess.run,
        [*cli, "--campaign", "nope"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert missing.returncode == 1
    assert "not on" in missing.stdout.decode()
