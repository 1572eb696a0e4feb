"""The features worker's per-record logic without faust (services/features/handlers.py): a
decision and its click become one Reward, the stats path folds partials into CreativeStats,
bad input is counted, and commands fan out erasures and watermarks."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.common.codec import SchemaRegistry
from services.common.topics import Topics
from services.features.handlers import Handlers, RewardRules
from services.features.join import JoinConfig, JoinTable
from services.features.metrics import FeaturesMetrics
from services.features.settings import Settings
from tests.integration.features_worker import decision, event

T0 = 1_800_000_000_000


@pytest.fixture
def h() -> Handlers:
    registry = SchemaRegistry.load()
    metrics = FeaturesMetrics()
    campaigns = {"c": {"campaign_id": "c", "reward": {"kind": "click"}}}
    join = JoinTable({}, JoinConfig(default_window_ms=1000), RewardRules(campaigns, metrics))
    creatives = {"a": {"creative_id": "a", "prior_alpha": 2.0, "prior_beta": 3.0}}
    return Handlers(Settings(), Topics(), registry, metrics, join, creatives)


def _count(h: Handlers, name: str, labels: dict[str, str]) -> float:
    return h.metrics.registry.get_sample_value(name, labels) or 0.0


def test_a_decision_and_its_click_become_one_reward(h: Handlers) -> None:
    d = decision("c", "a", decided_at=T0)
    d_value = h.decision_codec.encode(d)
    click = h.event_codec.encode(event(d, occurred_at=T0 + 100))
    topics = h.topics
    assert h.route_event(click, 0) == d["decision_id"].encode()  # re-keyed by decision
    assert h.on_join_input(topics.decisions.name, d_value, 0, 0, T0 / 1000) == []
    (sent,) = h.on_join_input("by-decision", click, 0, 0, (T0 + 100) / 1000)
    key, value = sent
    reward = h.reward_codec.decode(value)
    assert key == d["decision_id"].encode()
    assert (reward["decision_id"], reward["reward"], reward["outcome"]) == (
        d["decision_id"],
        1.0,
        "click",
    )
    assert _count(h, "admuse_features_rewards_total", {"outcome": "click"}) == 1
    # the same click again (a duplicate at a later offset) is recognised, not rewarded twice
    assert h.on_join_input("by-decision", click, 0, 1, (T0 + 100) / 1000) == []
    # the same message processed again after a crash resends its reward (consumers dedupe)
    assert h.on_join_input("by-decision", click, 0, 0, (T0 + 100) / 1000) == [sent]
    assert _count(h, "admuse_features_replayed_total", {}) == 1


def test_partials_fold_into_creative_stats(h: Handlers) -> None:
    d = decision("c", "a", decided_at=T0)
    h.on_join_input(h.topics.decisions.name, h.decision_codec.encode(d), 0, 0, T0 / 1000)
    h.on_join_input("by-decision", h.event_codec.encode(event(d)), 0, 1, T0 / 1000)
    partials = h.partials()
    assert partials and h.partials() == []  # coalesced: taken once
    table: dict[str, Any] = {}
    changed = h.fold(((value, f"ev{i}") for i, (_, value) in enumerate(partials)), table.get)
    assert changed
    records = [h.stats_codec.decode(v) for entry, _ in changed.values() for _, v in h.stats(entry)]
    cumulative = [r for r in records if r["creative_id"] == "a" and r.get("window_start") is None]
    assert cumulative and cumulative[0]["clicks"] == 1
    assert cumulative[0]["alpha"] >= 2.0  # the creative's prior is used


def test_bad_input_is_counted_not_raised(h: Handlers) -> None:
    assert h.route_event(b"\xc3\x01garbage", 0) is None
    assert h.on_join_input("by-decision", b"not json", 0, 0, 0.0) == []
    assert h.fold([(b"{}", None)], {}.get) == {}
    assert h.erase_command(b"junk") is None
    bad = _count(h, "admuse_features_bad_records_total", {"topic": "events-by-decision",
                                                          "reason": "decode_error"})  # fmt: skip
    assert bad == 1
    assert _count(h, "admuse_features_bad_records_total",
                  {"topic": "stats-partials", "reason": "decode_error"}) == 1  # fmt: skip


def test_erasures_and_ticks_become_join_commands(h: Handlers) -> None:
    request = {"request_id": "r1", "user_id": "p" * 64, "requested_at": T0, "reason": None}
    command = h.erase_command(h.erasure_codec.encode(request))
    assert command is not None and json.loads(command) == {"erase": "p" * 64, "request_id": "r1"}
    assert h.tick_command() is None  # no events watermark read yet
