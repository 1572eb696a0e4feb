"""Kill test: SIGKILL the worker at random points while decisions and events flow; after
restarts, every decision is counted exactly once in admuse.stats and admuse.rewards."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from types import SimpleNamespace
from typing import Any

import pytest

from services.cli.supervise import Supervisor
from services.common.codec import SchemaRegistry
from services.common.health import RESTART_EXIT_CODE
from services.common.kafka import ensure_topics, make_producer
from services.common.settings import KafkaSettings
from services.common.topics import Topics
from tests.integration.features_worker import (
    ROOT,
    FeaturesWorker,
    TopicReader,
    WatermarkSource,
    decision,
    event,
    trace_decision,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(400)]

APP_ID = "admuse-features"  # the worker's default
WINDOW_MS = 2000
KILLS = 5
CREATIVES = [f"cr{i}" for i in range(6)]


async def _traffic(
    producer: Any,
    topics: Topics,
    registry: SchemaRegistry,
    stop: asyncio.Event,
    rng: random.Random,
) -> list[tuple[dict, bool]]:
    """Decisions with on-time clicks (some duplicated, some sent before their decision) and
    late clicks, in real time, until `stop`; returns (decision, clicked on time)."""
    dcodec, ecodec = registry.codec("Decision"), registry.codec("AdEvent")
    produced: list[tuple[dict, bool]] = []
    pending: list[tuple[float, str, dict]] = []  # send at (monotonic), topic, record
    t0 = time.monotonic()
    i = 0
    while not stop.is_set() or pending:
        now = time.monotonic()
        if not stop.is_set() and now - t0 >= i * 0.08:
            d = decision(
                "kill",
                rng.choice(CREATIVES),
                user=f"u{rng.randrange(20)}",
                window_ms=WINDOW_MS,
                segment="tier=gold",
            )
            roll = rng.random()
            clicked = roll < 0.5
            if roll < 0.1:  # click sent before its decision
                pending.append((now, "events", event(d, "click", occurred_at=d["decided_at"])))
                pending.append((now + 0.1, "decisions", d))
            else:
                pending.append((now, "decisions", d))
                if clicked:
                    delay = rng.uniform(0.0, 0.8)
                    c = event(d, "click", occurred_at=d["decided_at"] + int(delay * 1000))
                    pending.append((now + delay, "events", c))
                    if rng.random() < 0.3:
                        pending.append((now + delay + 0.05, "events", c))  # duplicate
            if not clicked and rng.random() < 0.2:  # late click: not counted
                late = event(d, "click", occurred_at=d["decided_at"] + WINDOW_MS + 3000)
                pending.append((now + WINDOW_MS / 1000 + 3, "events", late))
            produced.append((d, clicked))
            i += 1
        pending.sort(key=lambda x: x[0])
        while pending and pending[0][0] <= time.monotonic():
            _, topic, rec = pending.pop(0)
            if topic == "decisions":
                await producer.send(
                    topics.decisions.name,
                    key=rec["decision_id"].encode(),
                    value=dcodec.encode(rec),
                )
            else:
                await producer.send(
                    topics.events.name, key=rec["user_id"].encode(), value=ecodec.encode(rec)
                )
        await asyncio.sleep(0.01)  # pacing the generator, not waiting for a condition
    await producer.flush()
    return produced


async def test_sigkill_restarts_count_every_decision_exactly_once(
    kafka: KafkaSettings, registry: SchemaRegistry, tmp_path: Any
) -> None:
    """SIGKILL the worker again and again at a random point while it processes."""
    await _kill_cycles(kafka, registry, tmp_path, while_joining=False)


async def test_sigkill_in_a_crash_loop_counts_every_decision_exactly_once(
    kafka: KafkaSettings, registry: SchemaRegistry, tmp_path: Any
) -> None:
    """Every other kill hits the successor while it still joins the group behind its killed
    predecessor's session (a crash loop). A successor whose first assignment were split with a
    dead member would restart to take the rest (services/features/rejoin.py); the broker waits
    out the dead members first in practice, and the test counts such restarts."""
    await _kill_cycles(kafka, registry, tmp_path, while_joining=True)


async def _kill_cycles(
    kafka: KafkaSettings,
    registry: SchemaRegistry,
    tmp_path: Any,
    *,
    while_joining: bool,
    settle_s: float = 180,
) -> None:
    rng = random.Random(uuid.uuid4().int)
    worker = _worker(kafka, tmp_path)
    async with _Traffic(kafka, registry, rng, worker) as traffic:
        replayed = 0.0  # messages found already applied after a restart (summed over workers)
        for i in range(KILLS):
            # a random point 0.3-3 s after it processes (or, every other kill in a crash
            # loop, after it serves HTTP: it may still be joining the group)
            await traffic.run_for(rng.uniform(0.3, 3.0))
            replayed += await worker.metric("admuse_features_replayed_total")
            worker.kill()
            worker.start()
            await worker.wait_ready(processing=not (while_joining and i % 2 == 0))
        await worker.wait_ready()
        assert await worker.metric("admuse_features_ready") == 1, "/metrics agrees with /readyz"
        produced = await traffic.finish()
        await _books_balance(kafka, registry, traffic.topics, produced, worker, settle_s)
        planned = traffic.supervisor.status()["first"]
        assert set(planned["exits"]) <= {RESTART_EXIT_CODE}, "only planned restarts"
        assert worker.starts == KILLS + 1 + planned["restarts"]
        print(f"{planned['restarts']} restarts to take gained partitions")
        replayed += await worker.metric("admuse_features_replayed_total")
        print(f"{replayed:.0f} messages found applied on replay, {KILLS} SIGKILLs")


async def test_a_killed_peers_partitions_are_taken_over_with_nothing_lost(
    kafka: KafkaSettings, registry: SchemaRegistry, tmp_path: Any
) -> None:
    """Two workers share the partitions; one is SIGKILLed; once its session expires the
    other gains its partitions mid-stream — it restarts (exit 75) and its supervisor starts
    it again — and every decision is counted once."""
    rng = random.Random(uuid.uuid4().int)
    a, b = _worker(kafka, tmp_path / "a"), _worker(kafka, tmp_path / "b")
    async with _Traffic(kafka, registry, rng, a) as traffic:
        b.start()
        try:
            await b.wait_ready()  # both hold partitions now
            await traffic.run_for(2.0)
            b.kill()
            # a's partitions keep flowing while b's wait out its session (6 s), then move
            await traffic.run_for(10.0)
            produced = await traffic.finish()
            await _books_balance(kafka, registry, traffic.topics, produced, a)
            planned = traffic.supervisor.status()["first"]
            assert planned["exits"] == [RESTART_EXIT_CODE], "a restarted once, to take over"
            assert a.starts == 2
        finally:
            b.stop()


def _worker(kafka: KafkaSettings, state_dir: Any) -> FeaturesWorker:
    state_dir.mkdir(parents=True, exist_ok=True)
    return FeaturesWorker(
        kafka,
        state_dir,
        ADMUSE_FEATURES_SESSION_TIMEOUT_S="6",
        ADMUSE_FEATURES_TICK_INTERVAL_S="0.25",
        ADMUSE_FEATURES_CLOSE_GRACE_MS="1000",
    )


class _Traffic:
    """A started worker (`first`) under the stack's supervisor (it restarts a worker that asks
    to be started again, as `admuse demo`/`up` do), ingestion's watermarks and the traffic
    generator."""

    def __init__(
        self,
        kafka: KafkaSettings,
        registry: SchemaRegistry,
        rng: random.Random,
        first: FeaturesWorker,
    ) -> None:
        self.kafka, self.registry, self.rng, self.first = kafka, registry, rng, first
        self.topics = Topics.from_settings(kafka)
        self.stop = asyncio.Event()
        self.supervised = asyncio.Event()  # set: the supervisor stops
        self.supervisor = Supervisor(
            SimpleNamespace(processes={"first": first}), ROOT, on_event=print
        )

    async def __aenter__(self) -> _Traffic:
        await ensure_topics(self.kafka, self.topics)
        self.first.start()
        self.producer = make_producer(self.kafka)
        try:
            await self.first.wait_ready()
            await self.producer.start()
            # ingestion's part: watermarks in admuse.events, ordered after the events before
            self.source = WatermarkSource(
                self.kafka, self.topics.events.name, producer=self.producer
            )
            await self.source.__aenter__()
        except BaseException:
            await self.producer.stop()  # (a no-op on a producer that never started)
            self.first.stop()
            raise
        self.task = asyncio.create_task(
            _traffic(self.producer, self.topics, self.registry, self.stop, self.rng)
        )
        self.supervising = asyncio.create_task(self.supervisor.run(self.supervised))
        return self

    async def run_for(self, seconds: float) -> None:
        """Let traffic flow for `seconds` (fails early if the generator crashed)."""
        done, _ = await asyncio.wait({self.task}, timeout=seconds)
        if done:
            self.task.result()
            raise AssertionError("traffic generator stopped early")

    async def finish(self) -> list[tuple[dict, bool]]:
        self.stop.set()
        return await self.task

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        self.supervised.set()
        await self.supervising
        if not self.task.done():
            self.task.cancel()
        await self.source.__aexit__(None, None, None)
        await self.producer.stop()
        self.first.stop()


async def _books_balance(
    kafka: KafkaSettings,
    registry: SchemaRegistry,
    topics: Topics,
    produced: list[tuple[dict, bool]],
    worker: FeaturesWorker,
    settle_s: float = 180,
) -> None:
    """Every decision has exactly its reward (a copy sent again is the same Reward, field for
    field), and the stats count each once."""
    expected_impressions = Counter(d["creative_id"] for d, _ in produced)
    expected_clicks = Counter(d["creative_id"] for d, clicked in produced if clicked)
    n = len(produced)
    async with (
        TopicReader(kafka, topics.rewards.name, "Reward", registry) as rewards,
        TopicReader(kafka, topics.stats.name, "CreativeStats", registry) as stats,
    ):
        try:
            await rewards.until(lambda r: len(r.by_key()) >= n, timeout_s=settle_s)
        except AssertionError:
            got = rewards.by_key()
            missing = [d for d, _ in produced if d["decision_id"] not in got]
            trace = await trace_decision(kafka, missing[0]["decision_id"], APP_ID)
            raise AssertionError(
                f"{len(got)} of {n} decisions have a reward after {settle_s:.0f} s; missing e.g. "
                f"{[(d['decision_id'], d['decided_at']) for d in missing[:5]]}; "
                f"worker: pending decisions "
                f"{await worker.metric('admuse_features_pending_decisions')}, held events "
                f"{await worker.metric('admuse_features_held_events')}, join lag "
                f"{await worker.metric('admuse_features_join_lag_seconds')} s; "
                f"trace of the first:\n{trace}\n"
                f"worker log: {worker.tail(3000)}"
            ) from None

        rewarded = rewards.by_key()
        unclicked = [
            d for d, clicked in produced if clicked and not rewarded[d["decision_id"]]["clicked"]
        ]
        if unclicked:
            trace = await trace_decision(kafka, unclicked[0]["decision_id"], APP_ID)
            raise AssertionError(
                f"{len(unclicked)} decisions clicked in their window were rewarded as not "
                f"clicked, e.g. {[d['decision_id'] for d in unclicked[:5]]}; trace of the "
                f"first:\n{trace}\nworker log: {worker.tail(3000)}"
            )

        def counts(seg: str) -> tuple[Counter, Counter]:
            last = stats.by_key()
            imp, clk = Counter(), Counter()
            for c in CREATIVES:
                rec = last.get(f"kill/{seg}/{c}")
                if rec:
                    imp[c], clk[c] = rec["impressions"], rec["clicks"]
            return imp, clk

        want = (expected_impressions, expected_clicks)
        try:
            await stats.until(
                lambda s: counts("tier=gold") == want and counts("*") == want, timeout_s=30
            )
        except AssertionError:
            deduped = rewards.by_key()
            got_clicks = Counter(r["creative_id"] for r in deduped.values() if r["clicked"])
            raise AssertionError(
                f"stats {counts('tier=gold')} / roll-up {counts('*')} != expected {want}; "
                f"rewards say clicks {got_clicks}; worker log: {worker.tail(3000)}"
            ) from None
    deduped = rewards.by_key()
    assert set(deduped) == {d["decision_id"] for d, _ in produced}
    differing = [(k, v, deduped[k]) for k, v, _ in rewards.records if v != deduped[k]]
    assert not differing, f"a Reward sent again differs from its other copy: {differing[:1]}"
    assert Counter(r["creative_id"] for r in deduped.values() if r["clicked"]) == expected_clicks
    print(
        f"\nkill test: {n} decisions, {sum(expected_clicks.values())} clicked, "
        f"{len(rewards.records)} reward records ({len(rewards.records) - n} sent again)"
    )
