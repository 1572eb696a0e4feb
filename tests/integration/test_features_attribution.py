"""Attribution through the real worker and broker: one worker serves every test here."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from services.common.codec import SchemaRegistry
from services.common.kafka import ensure_topics, make_producer
from services.common.settings import KafkaSettings
from services.common.topics import Topics
from services.common.watermark import DECIDED, WatermarkCodec
from tests.integration.features_worker import (
    FeaturesWorker,
    TopicReader,
    WatermarkSource,
    decision,
    event,
    produce,
)
from tests.polling import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WINDOW_MS = 2500
GRACE_MS = 300


@dataclass
class Harness:
    kafka: KafkaSettings
    topics: Topics
    registry: SchemaRegistry
    worker: FeaturesWorker
    rewards: TopicReader

    async def decide(self, d: dict[str, Any]) -> None:
        await produce(
            self.kafka,
            self.topics.decisions.name,
            self.registry.codec("Decision"),
            [(d["decision_id"], d)],
        )

    async def send(self, *events: dict[str, Any]) -> None:
        await produce(
            self.kafka,
            self.topics.events.name,
            self.registry.codec("AdEvent"),
            [(e["user_id"], e) for e in events],
        )

    async def reward_of(self, d: dict[str, Any], timeout_s: float = 30) -> dict[str, Any]:
        await self.rewards.until(lambda r: r.for_key(d["decision_id"]), timeout_s)
        return self.rewards.for_key(d["decision_id"])[0]

    async def metric_reaches(self, name: str, value: float, timeout_s: float = 20) -> float:
        got = [0.0]

        async def reached() -> bool:
            got[0] = await self.worker.metric(name)
            return got[0] >= value

        await eventually(reached, timeout_s, f"{name} >= {value}", every_s=0.1)
        return got[0]


def campaign(campaign_id: str, reward: dict[str, Any]) -> dict[str, Any]:
    return {
        "campaign_id": campaign_id,
        "name": campaign_id,
        "revision": 1,
        "attributes": [],
        "segment_keys": [],
        "reward": reward,
        "attribution_window_ms": WINDOW_MS,
        "holdout_share": 0.1,
        "forbidden": [],
        "min_contrast": 4.5,
        "allow_retire_catalog": False,
        "max_generated": 4,
        "updated_at": 0,
    }


def creative(creative_id: str, cta: str) -> dict[str, Any]:
    return {
        "creative_id": creative_id,
        "campaign_id": "c-burst",
        "origin": "catalog",
        "name": None,
        "attributes": {"cta": cta, "font_scale": 1.2},
        "status": "live",
        "segment": None,
        "model_version": None,
        "predicted_reward": None,
        "prior_alpha": 2.0,
        "prior_beta": 8.0,
        "created_at": 0,
        "retired_at": None,
    }


@pytest.fixture(scope="module")
async def h(
    kafka_base: KafkaSettings, registry: SchemaRegistry, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Harness]:
    kafka = kafka_base.model_copy(update={"topic_prefix": f"t{uuid.uuid4().hex[:10]}."})
    topics = Topics.from_settings(kafka)
    await ensure_topics(kafka, topics)
    weighted = {
        "kind": "weighted",
        "click_weight": 1.0,
        "conversion_weight": 0.0,
        "value_weight": 0.01,
        "sentiment_weight": 0.0,
    }
    await produce(
        kafka,
        topics.creatives.name,
        registry.codec("Creative"),
        [(f"b{i}", creative(f"b{i}", "Shop now" if i < 2 else "Learn more")) for i in range(5)],
    )
    await produce(
        kafka,
        topics.campaigns.name,
        registry.codec("Campaign"),
        [
            ("valued", campaign("valued", weighted)),
            ("by-event", {**campaign("by-event", {"kind": "click"}), "impressions": "event"}),
        ],
    )
    worker = FeaturesWorker(
        kafka,
        tmp_path_factory.mktemp("features"),
        ADMUSE_FEATURES_CLOSE_GRACE_MS=str(GRACE_MS),
        ADMUSE_FEATURES_TICK_INTERVAL_S="0.25",
    )
    worker.start()
    try:
        await worker.wait_ready()
        async with (
            WatermarkSource(kafka, topics.events.name),
            TopicReader(kafka, topics.rewards.name, "Reward", registry) as rewards,
        ):
            yield Harness(kafka, topics, registry, worker, rewards)
    finally:
        worker.stop()


async def test_click_inside_window_gives_reward_one_before_the_window_ends(h: Harness) -> None:
    d = decision("c-click", "cr1", window_ms=10_000)
    await h.decide(d)
    await h.send(event(d, "click"))
    r = await h.reward_of(d, timeout_s=9)
    assert (r["reward"], r["outcome"], r["clicked"]) == (1.0, "click", True)
    assert r["rewarded_at"].timestamp() * 1000 < d["decided_at"] + 10_000  # not at close
    assert (r["creative_id"], r["propensity"], r["policy_version"]) == ("cr1", 0.5, "v1")


async def test_no_click_gives_reward_zero_when_the_window_closes(h: Harness) -> None:
    d = decision("c-none", "cr1", window_ms=WINDOW_MS)
    await h.decide(d)
    r = await h.reward_of(d)
    assert (r["reward"], r["outcome"], r["clicked"]) == (0.0, "timeout", False)
    assert r["rewarded_at"].timestamp() * 1000 >= d["decided_at"] + WINDOW_MS + GRACE_MS


async def test_click_before_its_decision_is_joined(h: Harness) -> None:
    d = decision("c-early", "cr1", window_ms=10_000)
    held = await h.worker.metric("admuse_features_held_events")
    await h.send(event(d, "click"))
    await h.metric_reaches("admuse_features_held_events", held + 1)
    await h.decide(d)
    r = await h.reward_of(d)
    assert (r["reward"], r["outcome"]) == (1.0, "click")


async def test_click_after_the_window_is_counted_late_not_rewarded(h: Harness) -> None:
    d = decision("c-late", "cr1", window_ms=WINDOW_MS)
    await h.decide(d)
    r = await h.reward_of(d)
    assert r["reward"] == 0.0
    late = await h.worker.metric("admuse_features_late_events_total")
    await h.send(event(d, "click"))
    await h.metric_reaches("admuse_features_late_events_total", late + 1)
    await h.rewards.poll(500)
    assert len(h.rewards.for_key(d["decision_id"])) == 1


async def test_a_click_of_an_aborted_transaction_is_never_joined(h: Harness) -> None:
    """Ingestion writes events in transactions: what it aborted was never published."""
    d = decision("c-aborted", "cr1", window_ms=WINDOW_MS)
    await h.decide(d)
    producer = make_producer(h.kafka, transactional_id=f"aborting-{uuid.uuid4().hex}")
    await producer.start()
    try:
        await producer.begin_transaction()
        click = event(d, "click")
        await producer.send_and_wait(
            h.topics.events.name,
            key=click["user_id"].encode(),
            value=h.registry.codec("AdEvent").encode(click),
        )
        await producer.abort_transaction()
    finally:
        await producer.stop()
    r = await h.reward_of(d)
    assert (r["reward"], r["outcome"], r["clicked"]) == (0.0, "timeout", False)


async def test_duplicate_click_gives_one_reward(h: Harness) -> None:
    d = decision("c-dup", "cr1", window_ms=10_000)
    await h.decide(d)
    click = event(d, "click")
    dups = await h.worker.metric("admuse_features_events_total")
    await h.send(click, click, event(d, "click"))
    await h.metric_reaches("admuse_features_events_total", dups + 3)
    await h.reward_of(d)
    await h.rewards.poll(500)
    [r] = h.rewards.for_key(d["decision_id"])
    assert r["reward"] == 1.0


async def test_conversion_value_reward_from_the_campaign_spec(h: Harness) -> None:
    d = decision("valued", "cr1", window_ms=10_000)
    await h.decide(d)
    await h.send(event(d, "click"), event(d, "conversion", value=50.0))
    r = await h.reward_of(d)
    assert r["outcome"] == "conversion" and r["converted"] and r["clicked"]
    assert r["conversion_value"] == 50.0 and r["reward"] == pytest.approx(1.0 + 0.5)


async def test_with_impressions_from_events_a_decision_never_shown_is_not_an_impression(
    h: Harness,
) -> None:
    shown, unshown, clicked = (decision("by-event", "cr9", window_ms=WINDOW_MS) for _ in "abc")
    unshown_before = await h.worker.metric("admuse_features_unshown_decisions_total")
    for d in (shown, unshown, clicked):
        await h.decide(d)
    await h.send(event(shown, "impression"), event(clicked, "impression"), event(clicked))
    rewards = [await h.reward_of(d) for d in (shown, unshown, clicked)]
    assert [(r["shown"], r["reward"]) for r in rewards] == [(True, 0.0), (False, 0.0), (True, 1.0)]
    await h.metric_reaches("admuse_features_unshown_decisions_total", unshown_before + 1)
    async with TopicReader(h.kafka, h.topics.stats.name, "CreativeStats", h.registry) as stats:

        def counted(s: TopicReader) -> bool:
            last = s.by_key().get("by-event/*/cr9")
            return last is not None and last["impressions"] + last["unshown"] == 3

        await stats.until(counted, timeout_s=30)
        last = stats.by_key()["by-event/*/cr9"]
    assert (last["impressions"], last["unshown"], last["clicks"]) == (2, 1, 1)
    assert (last["successes"], last["failures"]) == (1.0, 1.0)  # the unshown one is no failure


async def test_erasure_deletes_the_users_pending_join_observably(h: Harness) -> None:
    d = decision("c-erase", "cr1", user="user-to-forget", window_ms=WINDOW_MS)
    await h.decide(d)
    await h.send(event(decision("c-erase", "cr1", user="user-to-forget"), "click"))  # held
    await h.metric_reaches("admuse_features_held_events", 1)
    request = {
        "request_id": uuid.uuid4().hex,
        "user_id": "user-to-forget",
        "requested_at": int(time.time() * 1000),
        "reason": "gdpr-art17",
    }
    await produce(
        h.kafka,
        h.topics.erasure.name,
        h.registry.codec("ErasureRequest"),
        [(request["user_id"], request)],
    )
    assert await h.metric_reaches("admuse_features_erased_states_total", 2) == 2
    assert await h.worker.metric("admuse_features_erasures_total") == 1
    assert '"erased"' in h.worker.tail(200_000)
    # the erased decision never gets its reward-0 at window close
    other = decision("c-erase", "cr2", window_ms=WINDOW_MS)
    await h.decide(other)
    await h.reward_of(other)
    await h.rewards.poll(500)
    assert h.rewards.for_key(d["decision_id"]) == []


async def test_stats_reflect_a_burst_of_rewards_within_one_second_p95(h: Harness) -> None:
    """Delay from a Reward's production to the first admuse.stats record that counts it
    (record timestamps, both written by the worker): p95 under 1 s."""
    creatives = [f"b{i}" for i in range(5)]
    burst = [decision("c-burst", creatives[i % 5], window_ms=30_000) for i in range(100)]
    await produce(
        h.kafka,
        h.topics.decisions.name,
        h.registry.codec("Decision"),
        [(d["decision_id"], d) for d in burst],
    )
    await h.send(*(event(d, "click") for d in burst))
    ids = {d["decision_id"] for d in burst}
    await h.rewards.until(lambda r: ids <= set(r.by_key()), timeout_s=60)
    async with TopicReader(h.kafka, h.topics.stats.name, "CreativeStats", h.registry) as stats:
        keys = {f"c-burst/*/{c}" for c in creatives}

        def complete(s: TopicReader) -> bool:
            last = s.by_key()
            return sum(last[k]["clicks"] for k in keys if k in last) == len(burst)

        await stats.until(complete, timeout_s=30)
        delays = []
        for c in creatives:
            times = sorted(
                ts for k, r, ts in h.rewards.records if k in ids and r["creative_id"] == c
            )
            seen = [(ts, r["clicks"]) for k, r, ts in stats.records if k == f"c-burst/*/{c}"]
            for n, produced_at in enumerate(times, start=1):
                reflected = min(ts for ts, clicks in seen if clicks >= n)
                delays.append(max(0, reflected - produced_at) / 1000)
    delays.sort()
    p50, p95 = delays[len(delays) // 2], delays[int(len(delays) * 0.95) - 1]
    print(
        f"\nstats latency over {len(delays)} rewards: p50 {p50 * 1000:.0f} ms, "
        f"p95 {p95 * 1000:.0f} ms, max {delays[-1] * 1000:.0f} ms"
    )
    assert p95 < 1.0
    # the creatives' priors are in the posterior; every creative was clicked every time
    last = stats.by_key()
    b0 = last["c-burst/*/b0"]
    assert (b0["impressions"], b0["clicks"], b0["alpha"], b0["beta"]) == (20, 20, 22.0, 8.0)


async def test_effects_report_ctr_interval_and_lift_per_attribute_value(h: Harness) -> None:
    d = decision("c-effects", "b0", window_ms=WINDOW_MS)  # b0: cta "Shop now", never clicked
    e = decision("c-effects", "b3", window_ms=WINDOW_MS)  # b3: cta "Learn more", clicked
    await produce(
        h.kafka,
        h.topics.decisions.name,
        h.registry.codec("Decision"),
        [(d["decision_id"], d), (e["decision_id"], e)],
    )
    await h.send(event(e, "click"))
    await h.reward_of(d)
    effects: dict[tuple[str, str, str], Any] = {}
    async with httpx.AsyncClient() as client:

        async def both_counted() -> bool:
            body = (await client.get(h.worker.url("/effects/c-effects"))).json()
            effects.clear()
            effects.update({(x["segment"], x["attribute"], x["value"]): x for x in body["effects"]})
            return sum(x["impressions"] for x in effects.values()) >= 2

        await eventually(both_counted, 20, "both impressions on /effects")
    shop, learn = effects[("*", "cta", "Shop now")], effects[("*", "cta", "Learn more")]
    assert (shop["ctr"], learn["ctr"], learn["segment_ctr"]) == (0.0, 1.0, 0.5)
    assert learn["lift"] == pytest.approx(1.0) and shop["lift"] == pytest.approx(-1.0)
    assert 0.0 < learn["ctr_low"] < 1.0 == learn["ctr_high"]


async def test_bad_records_are_counted_and_skipped_not_fatal(h: Harness) -> None:
    bad = await h.worker.metric("admuse_features_bad_records_total")
    producer = make_producer(h.kafka)
    await producer.start()
    try:
        await producer.send_and_wait(h.topics.decisions.name, key=b"x", value=b"not avro")
        await producer.send_and_wait(h.topics.events.name, key=b"u", value=b"\xc3\x01garbage!!")
    finally:
        await producer.stop()
    await h.metric_reaches("admuse_features_bad_records_total", bad + 2)
    d = decision("c-after-bad", "cr1", window_ms=10_000)  # still joining afterwards
    await h.decide(d)
    await h.send(event(d, "click"))
    assert (await h.reward_of(d))["reward"] == 1.0


async def _decisions_mark(h: Harness, claim_ms: int) -> None:
    """What inference states in every decisions partition: its decisions up to claim_ms
    are all written."""
    codec = WatermarkCodec(h.registry)
    producer = make_producer(h.kafka)
    await producer.start()
    try:
        value = codec.encode("admuse-test", 1, {0: claim_ms}, int(time.time() * 1000),
                             source=DECIDED)  # fmt: skip
        parts = sorted(await producer.partitions_for(h.topics.decisions.name))
        sent = [await producer.send(h.topics.decisions.name, value, partition=p) for p in parts]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def test_held_click_waits_for_the_decisions_watermark_then_joins_or_expires(
    h: Harness,
) -> None:
    """(Last in the module: its decision watermarks stay in the worker.) A click whose
    decision is late (e.g. in inference's spool) stays held while the events' watermark runs
    on and the decisions' watermark has not passed it + MAX_HOLD; a click whose decision
    never comes is unmatched once the decisions' watermark passes it."""
    max_hold = 600_000  # the worker's default ADMUSE_FEATURES_MAX_HOLD_MS
    late = decision("c-spooled", "cr1", window_ms=10_000)
    lost = decision("c-lost", "cr1", window_ms=10_000)
    t = int(time.time() * 1000)
    held = await h.worker.metric("admuse_features_held_events")
    unmatched = await h.worker.metric("admuse_features_unmatched_events_total")
    await h.send(event(late, "click", occurred_at=t), event(lost, "click", occurred_at=t - 5000))
    await h.metric_reaches("admuse_features_held_events", held + 2)
    await _decisions_mark(h, t - 5000 + max_hold)  # passes the lost click's allowance only
    await h.metric_reaches("admuse_features_unmatched_events_total", unmatched + 1)
    await h.decide(late)  # arrives after all, minutes of events' time later in a real spool
    r = await h.reward_of(late)
    assert (r["reward"], r["outcome"]) == (1.0, "click")
    assert await h.worker.metric("admuse_features_unmatched_events_total") == unmatched + 1
