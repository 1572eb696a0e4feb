"""Rewards you can trust, through the real ingestion and features processes on the real broker.

- Kill -9 of ingestion and features (random order and moments, some mid-batch) while
  admuse.events.raw holds a backlog of >= 2,000 events with >= 200 clicks inside their
  windows, long enough for the windows to pass on the wall clock; after the restarts every
  click is rewarded as a click, nothing is counted late, and every copy of a Reward a
  de-duplicating reader sees is the same Reward. Five cycles.
- A quiet spell: after the last input, every pending decision is rewarded within
  window + grace + 3 s, with nothing more sent (the watermarks advance on their own).
- A live source (a simulator through a broker stop, a collector after a 503) holds clicks
  until their windows have passed on the wall clock, stating claims into the raw topic: the
  windows wait for it, and the clicks, written late, are rewarded as clicks.
- A log from a year ago replayed with `admuse replay --to kafka` through the running
  services: `admuse ope --campaign` equals `admuse ope --replay` on the file, and the
  report's CTR equals the log's (the replay closes its windows by its own clock).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from services.common.codec import SchemaRegistry
from services.common.kafka import ensure_topics, make_admin, make_producer
from services.common.producer import ResilientProducer
from services.common.settings import KafkaSettings
from services.common.source_watermark import HeldEvents, SourceWatermarks
from services.common.topics import Topics
from services.common.watermark import WatermarkCodec
from tests.integration.features_worker import FeaturesWorker, TopicReader, decision
from tests.integration.ingestion_harness import ROOT, SECRET, IngestionProcess
from tests.polling import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(420)]

WINDOW_MS = 2000
GRACE_MS = 300
SKEW_MS = 300
CYCLES = 5
CLICKS = 220  # per cycle, each inside its decision's window
NOISE = 1800  # other raw events per cycle (impressions, views, dismissals: not joined)


@dataclass
class Loop:
    kafka: KafkaSettings
    topics: Topics
    registry: SchemaRegistry
    ingestion: IngestionProcess
    features: FeaturesWorker
    rewards: TopicReader
    producer: Any

    async def decide(self, n: int, tag: str) -> list[dict[str, Any]]:
        codec = self.registry.codec("Decision")
        out = []
        for i in range(n):
            d = decision(tag, f"cr{i % 5}", user=f"u{i}", window_ms=WINDOW_MS)
            await self.producer.send(
                self.topics.decisions.name, codec.encode(d), key=d["decision_id"].encode()
            )
            out.append(d)
        await self.producer.flush()
        return out

    async def raw(self, events: list[dict[str, Any]]) -> None:
        for ev in events:
            key = ev["user_id"].encode()
            await self.producer.send(self.topics.events_raw.name, json.dumps(ev).encode(), key=key)
        await self.producer.flush()

    async def features_stable(self) -> bool:
        admin = make_admin(self.kafka)
        await admin.start()
        try:
            group = f"{self.kafka.topic_prefix}admuse-features"
            (described,) = await admin.describe_consumer_groups([group])
            (state,) = described.groups
            return state[2] == "Stable" and len(state[5]) == 1
        finally:
            await admin.close()

    async def rewarded(self, decisions: list[dict[str, Any]], timeout_s: float, what: str) -> None:
        ids = {d["decision_id"] for d in decisions}

        async def done() -> bool:
            await self.rewards.poll()
            return ids <= self.rewards.by_key().keys()

        await eventually(done, timeout_s, what)


def raw_event(d: dict[str, Any], kind: str, occurred_at: int, n: int = 0) -> dict[str, Any]:
    return {
        "event_id": f"{d['decision_id']}:{kind}:{n}",
        "type": kind,
        "occurred_at": occurred_at,
        "campaign_id": d["campaign_id"],
        "creative_id": d["creative_id"],
        "decision_id": d["decision_id"],
        "user_id": d["user_id"],
        "consent": {"personalization": True},
    }


def backlog(decisions: list[dict[str, Any]], rng: random.Random) -> list[dict[str, Any]]:
    """One click per decision inside its window, and NOISE other events, shuffled per user."""
    events = []
    for d in decisions:
        events.append(raw_event(d, "impression", d["decided_at"]))
        events.append(raw_event(d, "click", d["decided_at"] + rng.randrange(0, WINDOW_MS // 2)))
    for n in range(NOISE - len(decisions)):
        d = rng.choice(decisions)
        kind = rng.choice(["impression", "view", "dismiss"])
        events.append(raw_event(d, kind, d["decided_at"] + rng.randrange(0, WINDOW_MS), n + 1))
    rng.shuffle(events)
    return events


@pytest.fixture
async def loop(
    kafka_base: KafkaSettings, registry: SchemaRegistry, tmp_path: Path
) -> AsyncIterator[Loop]:
    kafka = kafka_base.model_copy(update={"topic_prefix": f"t{uuid.uuid4().hex[:10]}."})
    topics = Topics.from_settings(kafka)
    await ensure_topics(kafka, topics)
    ingestion = IngestionProcess(
        kafka,
        tmp_path / "ingestion.log",
        ADMUSE_INGESTION_WATERMARK_SKEW_MS=str(SKEW_MS),
        ADMUSE_INGESTION_WATERMARK_INTERVAL_S="0.1",
        ADMUSE_INGESTION_TRANSFORM_WORKERS="0",
        ADMUSE_INGESTION_MAX_BATCH="20",  # the backlog takes 100+ transactions
        ADMUSE_INGESTION_SOURCE_LEARN_MS="1000",  # the quiet spell starts right after ready
    )
    features = FeaturesWorker(
        kafka,
        tmp_path,
        ADMUSE_FEATURES_SESSION_TIMEOUT_S="6",
        ADMUSE_FEATURES_TICK_INTERVAL_S="0.1",
        ADMUSE_FEATURES_CLOSE_GRACE_MS=str(GRACE_MS),
    )
    ingestion.start()
    features.start()
    producer = make_producer(kafka)
    await producer.start()
    try:
        await ingestion.wait_ready()
        await features.wait_ready()
        async with TopicReader(kafka, topics.rewards.name, "Reward", registry) as rewards:
            yield Loop(kafka, topics, registry, ingestion, features, rewards, producer)
    finally:
        await producer.stop()
        features.stop()
        ingestion.stop()


async def test_kills_with_a_raw_backlog_turn_no_click_into_a_timeout(loop: Loop) -> None:
    rng = random.Random(uuid.uuid4().int)
    everything: list[dict[str, Any]] = []
    for cycle in range(CYCLES):
        decisions = await loop.decide(CLICKS, f"kill{cycle}")
        everything += decisions
        events = backlog(decisions, rng)
        head = rng.randrange(0, len(events) // 3)  # some read before the kill, mid-batch
        await loop.raw(events[:head])
        await asyncio.sleep(rng.uniform(0.0, 0.4))  # a random kill point, not a wait
        victims = [loop.ingestion.kill, loop.features.kill]
        rng.shuffle(victims)
        for kill in victims:
            kill()
        await loop.raw(events[head:])  # the backlog, >= 2,000 events with the rest
        # Let the windows pass on the wall clock while nothing runs: a service that closed
        # windows by the clock would now time out every click of the backlog.
        deadline_ms = max(d["decided_at"] for d in decisions) + WINDOW_MS + GRACE_MS + 500
        await eventually(lambda t=deadline_ms: time.time() * 1000 > t, 10, "windows past")
        # Features first, and running (its dead predecessor gone from the group), so that it
        # reads ingestion's output while ingestion works off the backlog in small batches:
        # a watermark that ran ahead of the backlog would close the windows in between.
        loop.features.start()
        await loop.features.wait_ready()
        await eventually(loop.features_stable, 60, "features group stable with one member")
        loop.ingestion.start()
        await loop.ingestion.wait_ready()
        await loop.rewarded(decisions, 120, f"cycle {cycle}: a reward for every decision")
        late = await loop.features.metric("admuse_features_late_events_total")
        assert late == 0, f"cycle {cycle}: {late} events late\n{loop.features.tail()}"

    by_id: dict[str, list[dict[str, Any]]] = {}
    for key, reward, _ in loop.rewards.records:
        by_id.setdefault(key, []).append(reward)
    assert set(by_id) >= {d["decision_id"] for d in everything}
    timed_out = [k for k in by_id if by_id[k][0]["outcome"] != "click"]
    assert not timed_out, f"{len(timed_out)} clicks rewarded as {by_id[timed_out[0]][0]}"
    for key, copies in by_id.items():  # a de-duplicating reader may keep any copy
        assert all(c == copies[0] for c in copies), (key, copies)
    assert all(c[0]["reward"] == 1.0 and c[0]["clicked"] for c in by_id.values())


async def test_a_quiet_spell_closes_every_window_without_more_input(loop: Loop) -> None:
    decisions = await loop.decide(60, "quiet")
    clicked = decisions[::3]
    await loop.raw([raw_event(d, "click", d["decided_at"] + 100) for d in clicked])
    last_deadline = max(d["decided_at"] for d in decisions) + WINDOW_MS
    # nothing else is sent from here on
    await loop.rewarded(decisions, 60, "a reward for every decision")
    by_id = loop.rewards.by_key()
    ids = {d["decision_id"] for d in clicked}
    for d in decisions:
        r = by_id[d["decision_id"]]
        assert r["outcome"] == ("click" if d["decision_id"] in ids else "timeout"), r
    all_ids = {d["decision_id"] for d in decisions}
    arrived = max(ts for k, _, ts in loop.rewards.records if k in all_ids)
    assert arrived <= last_deadline + GRACE_MS + 3000, (
        f"last reward {arrived - last_deadline} ms after the last window ended"
    )


async def test_clicks_a_source_held_past_their_windows_are_joined_as_clicks(loop: Loop) -> None:
    held = HeldEvents()
    producer = ResilientProducer(lambda: make_producer(loop.kafka), name="app")
    await producer.start()
    source = SourceWatermarks(
        producer,
        topic=loop.topics.events_raw.name,
        codec=WatermarkCodec(loop.registry),
        name=f"app-{uuid.uuid4().hex[:8]}",
        held=held,
    )
    source.start()
    try:
        await eventually(lambda: source.stated >= 3, 20, "the source states claims")
        decisions = await loop.decide(30, "held")
        clicks = [raw_event(d, "click", d["decided_at"] + 100) for d in decisions]
        tokens = [held.hold(c["occurred_at"]) for c in clicks]  # refused, or Kafka away
        # the windows pass on the wall clock while ingestion reads raw to its end, again and
        # again: nothing may close them while the source says it still holds their clicks
        deadline_ms = max(d["decided_at"] for d in decisions) + WINDOW_MS + GRACE_MS + 2500
        await eventually(lambda: time.time() * 1000 > deadline_ms, 15, "windows past")
        await loop.rewards.poll()
        early = {d["decision_id"] for d in decisions} & loop.rewards.by_key().keys()
        assert not early, f"{len(early)} windows closed while their clicks were held"
        await loop.raw(clicks)  # the resend
        for token in tokens:
            held.release(token)
        await loop.rewarded(decisions, 60, "a reward for every decision")
        by_id = loop.rewards.by_key()
        outcomes = [by_id[d["decision_id"]]["outcome"] for d in decisions]
        assert outcomes == ["click"] * len(decisions), outcomes
        assert await loop.features.metric("admuse_features_late_events_total") == 0
    finally:
        await source.close(end=True)
        await producer.stop()


def _cli(kafka: KafkaSettings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ADMUSE_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "ADMUSE_KAFKA_TOPIC_PREFIX": kafka.topic_prefix,
        "ADMUSE_PSEUDONYM_SECRET": SECRET,
    }
    return subprocess.run(
        [sys.executable, "-c", "from services.cli import app; app()", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


async def test_a_year_old_log_replayed_through_the_services_equals_the_file_route(
    loop: Loop, tmp_path: Path
) -> None:
    rng = random.Random(12)
    start = datetime(2025, 12, 5, 8, 0, tzinfo=UTC)  # a year before the test's "now"
    rows = []
    for i in range(400):
        ts = start + timedelta(seconds=i * 7 + rng.randrange(7))  # windows overlap (60 s)
        ad = rng.choice(["a", "b", "c"])
        p = {"a": 0.5, "b": 0.3, "c": 0.2}[ad]
        click = int(rng.random() < {"a": 0.1, "b": 0.2, "c": 0.3}[ad])
        rows.append(f"{ts.isoformat()},user{i % 50},{rng.choice(['DE', 'FR'])},{ad},{p},{click}")
    path = tmp_path / "history.csv"
    path.write_text("ts,uid,country,ad,p,click\n" + "\n".join(rows) + "\n")
    mapping = "action=ad,reward=click,propensity=p,context=country,timestamp=ts,user=uid"
    clicks = sum(int(r.rsplit(",", 1)[1]) for r in rows)

    res = _cli(
        loop.kafka, "replay", str(path), "--mapping", mapping, "--to", "kafka",
        "--campaign", "history", "--attribution-window-s", "60",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr + res.stdout

    async def all_rewarded() -> bool:
        await loop.rewards.poll()
        return sum(r["campaign_id"] == "history" for r in loop.rewards.by_key().values()) == 400

    await eventually(all_rewarded, 120, "a Reward for each of the 400 replayed decisions")
    rewards = [r for r in loop.rewards.by_key().values() if r["campaign_id"] == "history"]
    assert sum(r["clicked"] for r in rewards) == clicks  # no click of the log turned late
    assert await loop.features.metric("admuse_features_late_events_total") == 0

    estimates = {}
    for source in (["--campaign", "history"], ["--replay", str(path), "--mapping", mapping]):
        out = tmp_path / f"ope-{source[0][2:]}.json"
        res = _cli(loop.kafka, "ope", *source, "--policy", "uniform", "--json", str(out))
        assert res.returncode == 0, res.stderr + res.stdout
        estimates[source[0]] = json.loads(out.read_text())["estimates"]
    for name in ("IPS", "SNIPS"):
        kafka_value = estimates["--campaign"][name]["value"]
        file_value = estimates["--replay"][name]["value"]
        assert abs(kafka_value - file_value) <= 1e-12, (name, kafka_value, file_value)

    out = tmp_path / "report.json"
    res = _cli(loop.kafka, "report", "--campaign", "history", "--json", str(out))
    assert res.returncode == 0, res.stderr + res.stdout
    report = json.loads(out.read_text())
    arms = report["arms"]
    assert sum(a["pending"] for a in arms) == 0
    ctr = sum(a["rewarded"]["successes"] for a in arms) / sum(a["outcomes"] for a in arms)
    assert abs(ctr - clicks / 400) <= 1e-12, (ctr, clicks / 400, arms)
