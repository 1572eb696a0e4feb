"""`admuse report`, `admuse ope` and `admuse replay --to kafka` against the real broker.

Decisions, rewards, the campaign, its creatives and bandit stats are written with
services.common.codec under the test's topic prefix; the commands run as a user runs them (a
subprocess with ADMUSE_KAFKA_* set) and their JSON output is checked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiokafka.partitioner import DefaultPartitioner

from services.common.codec import SchemaRegistry
from services.common.kafka import make_consumer, make_producer
from services.common.settings import KafkaSettings
from services.common.topics import Topics
from services.common.watermark import WatermarkCodec
from tests.polling import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_795_773_600_000  # 2026-11-27T10:00:00Z
SEGMENTS = ["country=DE", "country=FR"]
CREATIVES = {"spring-a": "Save 20%", "spring-b": "New in"}


def _cli(kafka: KafkaSettings, *args: str, env: dict[str, str] | None = None):
    full_env = {
        **os.environ,
        "ADMUSE_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "ADMUSE_KAFKA_TOPIC_PREFIX": kafka.topic_prefix,
        **(env or {}),
    }
    return subprocess.run(
        [sys.executable, "-c", "from services.cli import app; app()", *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _decision(i: int, campaign: str, arm: str, decided_at: int) -> dict[str, Any]:
    creative = list(CREATIVES)[i % 2]
    return {
        "decision_id": f"{campaign}-d{i}",
        "decided_at": decided_at,
        "campaign_id": campaign,
        "segment": SEGMENTS[(i // 2) % 2],
        "context": {"country": SEGMENTS[(i // 2) % 2][8:]},
        "user_id": f"u{i}",
        "creative_id": creative,
        "propensity": 0.5,
        "arm": arm,
        "policy": "uniform" if arm == "control" else "thompson",
        "policy_version": "v1",
        "model_version": None,
        "attribution_window_ms": 60_000,
        "candidates": 2,
    }


def _reward(d: dict[str, Any], reward: float) -> dict[str, Any]:
    keep = (
        "decision_id",
        "campaign_id",
        "segment",
        "context",
        "user_id",
        "creative_id",
        "propensity",
        "arm",
        "policy",
        "policy_version",
        "model_version",
        "decided_at",
    )
    return {
        **{k: d[k] for k in keep},
        "reward": reward,
        "clicked": reward > 0,
        "converted": False,
        "conversion_value": 0.0,
        "sentiment": None,
        "outcome": "click" if reward else "no_click",
        "event_at": d["decided_at"] + 1000 if reward else None,
        "rewarded_at": d["decided_at"] + 60_000,
    }


async def _produce(kafka: KafkaSettings, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = make_producer(kafka)
    await producer.start()
    try:
        for key, value in records:
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def _consume_all(kafka: KafkaSettings, topic: str, expect: int) -> list[Any]:
    consumer = make_consumer(kafka, topic, group_id=None)
    await consumer.start()
    out: list[Any] = []

    async def read_more() -> bool:
        batch = await consumer.getmany(timeout_ms=500)
        out.extend(m for msgs in batch.values() for m in msgs)
        return len(out) >= expect

    try:
        await eventually(read_more, 30, f"{expect} records on {topic}", every_s=0)
    finally:
        await consumer.stop()
    return out


async def _seed_campaign(kafka: KafkaSettings, topics: Topics, registry: SchemaRegistry) -> None:
    rng = np.random.default_rng(7)
    dec_codec, rew_codec = registry.codec("Decision"), registry.codec("Reward")
    decisions, rewards = [], []
    for i in range(800):
        arm = "control" if i % 4 < 2 else "optimized"  # 50/50, both creatives in both arms
        d = _decision(i, "spring", arm, T0 + i * 1000)
        decisions.append(d)
        if i < 700:  # the last 100 are still inside their attribution window
            p = 0.08 if arm == "control" else 0.16
            rewards.append(_reward(d, float(rng.random() < p)))
    old = _decision(9999, "spring", "control", T0 - 86_400_000)  # before --from
    other = _decision(5, "autumn", "control", T0 + 5000)  # another campaign
    for d in (old, other):
        decisions.append(d)
        rewards.append(_reward(d, 1.0))
    await _produce(
        kafka,
        topics.decisions.name,
        [(d["decision_id"].encode(), dec_codec.encode(d)) for d in decisions],
    )
    await _produce(
        kafka,
        topics.rewards.name,
        [(r["decision_id"].encode(), rew_codec.encode(r)) for r in rewards]
        + [(b"junk", b"not avro")],
    )
    campaign = {
        "campaign_id": "spring",
        "name": "Spring",
        "revision": 1,
        "attributes": [
            {"name": "headline", "kind": "categorical", "values": list(CREATIVES.values())}
        ],
        "segment_keys": ["country"],
        "reward": {"kind": "click"},
        "attribution_window_ms": 60_000,
        "holdout_share": 0.5,
        "updated_at": T0,
    }
    await _produce(
        kafka, topics.campaigns.name, [(b"spring", registry.codec("Campaign").encode(campaign))]
    )
    creatives = [
        {
            "creative_id": cid,
            "campaign_id": "spring",
            "origin": "catalog",
            "attributes": {"headline": h},
            "status": "live",
            "created_at": T0,
        }
        for cid, h in CREATIVES.items()
    ]
    await _produce(
        kafka,
        topics.creatives.name,
        [(c["creative_id"].encode(), registry.codec("Creative").encode(c)) for c in creatives],
    )
    stats = [
        {
            "campaign_id": "spring",
            "segment": seg,
            "creative_id": cid,
            "impressions": 100,
            "clicks": clicks,
            "conversions": 0,
            "reward_sum": float(clicks),
            "alpha": 1.0 + clicks,
            "beta": 101.0 - clicks,
            "updated_at": T0,
        }
        for seg in SEGMENTS
        for cid, clicks in (("spring-a", 20), ("spring-b", 5))
    ]
    await _produce(
        kafka,
        topics.stats.name,
        [
            (
                f"spring/{s['segment']}/{s['creative_id']}".encode(),
                registry.codec("CreativeStats").encode(s),
            )
            for s in stats
        ],
    )


async def test_report_and_ope_read_decisions_and_rewards(
    kafka: KafkaSettings, topics: Topics, registry: SchemaRegistry, tmp_path: Path
) -> None:
    await _seed_campaign(kafka, topics, registry)
    out, page = tmp_path / "report.json", tmp_path / "report.html"
    res = _cli(
        kafka,
        "report",
        "--campaign",
        "spring",
        "--from",
        "2026-11-27T09:00:00Z",
        "--json",
        str(out),
        "--html",
        str(page),
    )
    assert res.returncode == 0, res.stderr + res.stdout
    rep = json.loads(out.read_text())
    arms = {a["arm"]: a for a in rep["arms"]}
    assert arms["control"]["impressions"] == 400 and arms["optimized"]["impressions"] == 400
    assert arms["control"]["outcomes"] + arms["optimized"]["outcomes"] == 700
    assert arms["optimized"]["pending"] + arms["control"]["pending"] == 100
    assert rep["expected_control_share"] == 0.5  # from the campaign record
    assert rep["srm"]["flagged"] is False
    comp = rep["comparisons"]["optimized"]
    assert comp["lift"]["estimate"] > 0 and comp["prob_treatment_beats_control"] > 0.9
    assert comp["sequential"]["looks"] > 10
    assert {e["group"] for e in rep["creatives"]} == set(CREATIVES)
    assert {e["group"] for e in rep["attributes"]["headline"]} == set(CREATIVES.values())
    assert any("1 record(s) of rewards did not decode" in n for n in rep["notes"])
    assert "Campaign spring" in res.stdout and page.read_text().startswith("<!doctype html>")

    # The same campaign, seen through offsets only: the first 10 records of each partition.
    res = _cli(
        kafka,
        "report",
        "--campaign",
        "spring",
        "--decisions-offsets",
        "0-10",
        "--rewards-offsets",
        "0-10",
        "--control-share",
        "0.5",
        "--json",
        str(out),
    )
    assert res.returncode == 0, res.stderr + res.stdout
    partial = json.loads(out.read_text())
    assert sum(a["impressions"] for a in partial["arms"]) <= 40

    assert any("100 of 800 decisions (12.5%) have no Reward yet" in n for n in rep["notes"])
    res = _cli(kafka, "report", "--campaign", "spring", "--max-pending", "0.1")
    assert res.returncode == 3 and "have no Reward yet" in res.stderr, res.stderr

    ope_out = tmp_path / "ope.json"
    args = ["ope", "--campaign", "spring", "--from", "2026-11-27T09:00:00Z", "--policy", "greedy"]
    res = _cli(kafka, *args, "--json", str(ope_out))
    # 100 of the 800 decisions are still inside their window: an estimate over the other
    # 700 alone would be biased, so it is refused unless asked for.
    assert res.returncode == 3, res.stderr + res.stdout
    assert "100 of 800 decisions (12.5%) have no Reward yet" in " ".join(res.stderr.split())
    res = _cli(kafka, *args, "--max-pending", "0.2", "--json", str(ope_out))
    assert res.returncode == 0, res.stderr + res.stdout
    assert "warning: 100 of 800" in " ".join(res.stderr.split())
    ope = json.loads(ope_out.read_text())
    assert ope["n"] == 700 and ope["policy"] == "greedy" and not ope["refused"]
    assert set(ope["estimates"]) == {"DM", "IPS", "SNIPS", "DR"}
    assert ope["support"]["unsupported_mass"] == 0.0


async def test_replay_writes_decisions_and_raw_events(
    kafka: KafkaSettings, topics: Topics, registry: SchemaRegistry, tmp_path: Path
) -> None:
    path = tmp_path / "logs.csv"
    rows = [
        f"2026-11-27T10:00:{i:02d}Z,user{i},DE,ad{i % 3},0.25,{i % 4 == 0:d}" for i in range(20)
    ]
    path.write_text("ts,uid,country,ad,p,click\n" + "\n".join(rows) + "\n")
    mapping = "action=ad,reward=click,propensity=p,context=country,timestamp=ts,user=uid"
    secret = "test-secret"
    res = _cli(
        kafka,
        "replay",
        str(path),
        "--mapping",
        mapping,
        "--to",
        "kafka",
        "--campaign",
        "spring",
        env={"ADMUSE_PSEUDONYM_SECRET": secret},
    )
    assert res.returncode == 0, res.stderr + res.stdout
    assert "replayed 20 decision(s) and 25 event(s)" in " ".join(res.stdout.split())

    codec = registry.codec("Decision")
    marks = WatermarkCodec(registry)
    every = await _consume_all(kafka, topics.decisions.name, 20 + topics.decisions.partitions)
    parts = list(range(topics.decisions.partitions))
    # the replay's end of source, after its decisions in every decisions partition
    for p in parts:
        in_p = [m for m in every if m.partition == p]
        assert marks.is_watermark(in_p[-1].value)
        end = marks.decode(in_p[-1].value)
        assert end["source"] == "replay:logs.csv" and end["claims"][0]["watermark_ms"] == 2**62
    messages = [m for m in every if not marks.is_watermark(m.value)]
    # Keyed by decision_id, on the partition a plain producer.send() would choose.
    assert all(m.partition == DefaultPartitioner()(m.key, parts, parts) for m in messages)
    decisions = [codec.decode(m.value) for m in messages]
    assert len(decisions) == 20
    assert all(d["user_id"] == "" for d in decisions)  # no user identity in decisions
    raw = await _consume_all(kafka, topics.events_raw.name, 25 + topics.events_raw.partitions)
    ends = [marks.decode(m.value) for m in raw if marks.is_watermark(m.value)]
    # the replay's end of source, after its events in every raw partition
    assert sorted(m.partition for m in raw if marks.is_watermark(m.value)) == list(
        range(topics.events_raw.partitions)
    )
    assert all(e["source"] == "replay:logs.csv" for e in ends)
    for p in range(topics.events_raw.partitions):
        in_p = [m for m in raw if m.partition == p]
        assert marks.is_watermark(in_p[-1].value)
    events = [json.loads(m.value) for m in raw if not marks.is_watermark(m.value)]
    shown = {e["user_id"]: e["decision_id"] for e in events if e["type"] == "impression"}
    by_id = {d["decision_id"]: d for d in decisions}
    d7 = by_id[shown["user7"]]
    assert d7["creative_id"] == "ad1" and d7["propensity"] == 0.25
    assert d7["segment"] == "country=DE" and d7["context"] == {"country": "DE"}
    assert int(d7["decided_at"].timestamp()) == T0 // 1000 + 7

    assert sorted(e["type"] for e in events).count("click") == 5
    clicks = {e["decision_id"] for e in events if e["type"] == "click"}
    assert clicks == {shown[f"user{i}"] for i in range(0, 20, 4)}
    assert all(e["user_id"].startswith("user") for e in events)  # raw ids: ingestion hashes them


async def test_replay_with_bad_rows_writes_nothing(
    kafka: KafkaSettings, topics: Topics, tmp_path: Path
) -> None:
    from aiokafka import TopicPartition
    from typer.testing import CliRunner

    from services.cli import app

    path = tmp_path / "logs.csv"
    path.write_text("ts,country,ad,p,click\n1795773600000,DE,a,0.5,1\n1795773600000,DE,a,1.2,1\n")
    env = {
        "ADMUSE_PSEUDONYM_SECRET": "s",
        "ADMUSE_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "ADMUSE_KAFKA_TOPIC_PREFIX": kafka.topic_prefix,
    }
    mapping = "action=ad,reward=click,propensity=p,context=country,timestamp=ts"
    res = CliRunner(env=env).invoke(
        app, ["replay", str(path), "--mapping", mapping, "--to", "kafka", "--campaign", "spring"]
    )
    assert res.exit_code == 2
    assert "row 2 (line 3)" in " ".join(res.output.split())
    consumer = make_consumer(kafka, group_id=None)
    await consumer.start()
    try:
        parts = [
            TopicPartition(topics.decisions.name, p) for p in range(topics.decisions.partitions)
        ]
        assert sum((await consumer.end_offsets(parts)).values()) == 0
    finally:
        await consumer.stop()
