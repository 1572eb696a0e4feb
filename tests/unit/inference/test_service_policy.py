"""The serving side of inference without I/O: state updates, the policy's propensities,
control arm, back-off and caching, and request validation."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import numpy as np
import pytest

from services.inference.decide import BadRequest, validate_request
from services.inference.policy import NoCreatives, Policy
from services.inference.state import State
from tests.polling import eventually

SEG = "country=DE"


def _campaign(**kw: Any) -> dict[str, Any]:
    return {"campaign_id": "c", "revision": 3, "segment_keys": ["country"],
            "holdout_share": 0.0, "attribution_window_ms": 1000, **kw}  # fmt: skip


def _creative(
    cid: str, origin: str = "catalog", segment: str | None = None, status: str = "live", **kw: Any
) -> dict[str, Any]:
    return {"creative_id": cid, "campaign_id": "c", "origin": origin, "segment": segment,
            "status": status, "attributes": {"headline": cid}, "prior_alpha": 1.0,
            "prior_beta": 1.0, **kw}  # fmt: skip


def _stats(cid: str, segment: str, n: int, clicks: int) -> dict[str, Any]:
    return {"campaign_id": "c", "segment": segment, "creative_id": cid, "window_start": None,
            "impressions": n, "clicks": clicks, "reward_sum": float(clicks),
            "alpha": 1.0 + clicks, "beta": 1.0 + n - clicks, "updated_at": 0}  # fmt: skip


def _state(*creatives: dict[str, Any]) -> State:
    state = State()
    state.apply_campaign("c", _campaign())
    for c in creatives:
        state.apply_creative(c["creative_id"], c)
    return state


def _policy(state: State, **kw: Any) -> Policy:
    args = {"exploration_floor": 0.0, "n_draws": 1000, "refresh_ms": 0,
            "backoff_impressions": 200, "seed": 1, **kw}  # fmt: skip
    return Policy(state, **args)


def test_creatives_go_live_retire_and_vanish_with_tombstones() -> None:
    state = _state(_creative("a"), _creative("b"), _creative("g", "generated", segment=SEG))
    assert [c["creative_id"] for c in state.live_creatives("c", SEG)] == ["a", "b", "g"]
    assert [c["creative_id"] for c in state.live_creatives("c", "country=FR")] == ["a", "b"]
    before = state.structure_version["c"]
    state.apply_creative("b", _creative("b", status="retired"))
    assert [c["creative_id"] for c in state.live_creatives("c", SEG)] == ["a", "g"]
    assert state.structure_version["c"] > before
    state.apply_creative("g", None)
    assert "g" not in state.creatives and len(state.live_creatives("c")) == 1


def test_windowed_stats_do_not_feed_the_bandit() -> None:
    state = _state(_creative("a"))
    state.apply_stats("c/*/a@0", {**_stats("a", "*", 10, 5), "window_start": 0})
    assert state.segment_stats("c", "*", "a") is None
    state.apply_stats("c/*/a", _stats("a", "*", 10, 5))
    assert state.segment_stats("c", "*", "a").impressions == 10
    state.apply_stats("c/*/a", None)
    assert state.segment_stats("c", "*", "a") is None


def test_propensities_sum_to_one_and_match_choice_frequencies() -> None:
    state = _state(_creative("a"), _creative("b"), _creative("c3"))
    for cid, clicks in (("a", 30), ("b", 36), ("c3", 24)):
        state.apply_stats(f"c/{SEG}/{cid}", _stats(cid, SEG, 1000, clicks))
    policy = _policy(state, exploration_floor=0.05)
    props = policy.propensities(_campaign(), SEG)
    assert sum(props.values()) == pytest.approx(1.0, abs=1e-9)
    assert min(props.values()) >= 0.05 / 3 - 1e-12
    n = 20_000
    counts = Counter(policy.choose(_campaign(), SEG, f"u{i}").creative["creative_id"]
                     for i in range(n))  # fmt: skip
    for cid, p in props.items():
        sd = (p * (1 - p) / n) ** 0.5
        assert abs(counts[cid] / n - p) < 5 * sd + 1e-3, (cid, counts[cid] / n, p)
    choice = policy.choose(_campaign(), SEG, "x")
    assert choice.propensity == pytest.approx(props[choice.creative["creative_id"]])
    assert (choice.arm, choice.policy, choice.candidates) == ("optimized", "thompson", 3)


def test_control_arm_is_uniform_over_live_catalog_creatives() -> None:
    state = _state(_creative("a"), _creative("b"), _creative("g", "generated"))
    policy = _policy(state)
    campaign = _campaign(holdout_share=1.0)
    picks = Counter()
    for i in range(600):
        choice = policy.choose(campaign, SEG, f"user-{i}")
        assert (choice.arm, choice.policy, choice.propensity) == ("control", "uniform", 0.5)
        picks[choice.creative["creative_id"]] += 1
    assert set(picks) == {"a", "b"} and min(picks.values()) > 240


def test_sparse_segment_backs_off_to_the_campaign_rollup() -> None:
    state = _state(_creative("a"), _creative("b"))
    state.apply_stats("c/*/a", _stats("a", "*", 5000, 500))  # a is much better overall
    state.apply_stats("c/*/b", _stats("b", "*", 5000, 100))
    policy = _policy(state)
    sparse = policy.propensities(_campaign(), "country=IS")  # no stats of its own
    assert sparse["a"] > 0.75  # without the roll-up it would be 0.5
    for cid, clicks in (("a", 100), ("b", 500)):  # but plenty of evidence in DE says b
        state.apply_stats(f"c/{SEG}/{cid}", _stats(cid, SEG, 5000, clicks))
    assert policy.propensities(_campaign(), SEG)["b"] > 0.9


def test_cached_policy_refreshes_on_new_creatives_at_once_and_on_stats_by_timer() -> None:
    state = _state(_creative("a"), _creative("b"))
    policy = _policy(state, refresh_ms=60_000)
    v1 = policy.choose(_campaign(), SEG, "u").policy_version
    state.apply_stats(f"c/{SEG}/a", _stats("a", SEG, 1000, 900))
    assert policy.choose(_campaign(), SEG, "u").policy_version == v1  # within refresh window
    state.apply_creative("b", _creative("b", status="retired"))
    after = policy.choose(_campaign(), SEG, "u")
    assert after.policy_version != v1 and after.creative["creative_id"] == "a"
    assert after.propensity == 1.0


def test_better_creative_wins_most_traffic_as_rewards_arrive() -> None:
    state = _state(*[_creative(x) for x in "abcd"])
    true_ctr = {"a": 0.02, "b": 0.03, "c": 0.02, "d": 0.08}
    policy = _policy(state, exploration_floor=0.02)
    rng = np.random.default_rng(7)
    shown = Counter()
    clicks = Counter()
    for step in range(40):
        for i in range(100):
            cid = policy.choose(_campaign(), SEG, f"u{step}-{i}").creative["creative_id"]
            shown[cid] += 1
            clicks[cid] += int(rng.random() < true_ctr[cid])
        for cid in shown:  # features publishes cumulative stats
            state.apply_stats(f"c/{SEG}/{cid}", _stats(cid, SEG, shown[cid], clicks[cid]))
    assert policy.propensities(_campaign(), SEG)["d"] > 0.7


def test_no_live_creative_is_a_clear_error() -> None:
    with pytest.raises(NoCreatives, match="no live creative"):
        _policy(_state()).choose(_campaign(), SEG, "u")


@pytest.mark.parametrize(
    ("campaign_id", "user_id", "context", "field"),
    [
        ("", "u", {}, "campaign_id"),
        ("c" * 200, "u", {}, "campaign_id"),
        ("c", "", {}, "user_id"),
        ("c", "u", {f"k{i}": "v" for i in range(40)}, "context"),
        ("c", "u", {"country": "x" * 300}, "context.country"),
    ],
)
def test_bad_requests_name_the_field(
    campaign_id: str, user_id: str, context: dict[str, str], field: str
) -> None:
    with pytest.raises(BadRequest) as err:
        validate_request(campaign_id, user_id, context)
    assert err.value.field == field and str(err.value).startswith(field)


async def test_moved_posteriors_are_refreshed_off_the_request_path() -> None:
    import asyncio

    state = _state(_creative("a"), _creative("b"))
    policy = _policy(state, refresh_ms=20)
    v1 = policy.choose(_campaign(), SEG, "u").policy_version
    state.apply_stats(f"c/{SEG}/b", _stats("b", SEG, 2000, 1500))
    assert policy.choose(_campaign(), SEG, "u").policy_version == v1  # served stale, not waited
    task = asyncio.create_task(policy.run_refresh())
    try:
        await eventually(
            lambda: policy.choose(_campaign(), SEG, "u").policy_version != v1,
            10,
            "the snapshot to refresh",
            every_s=0.01,
        )
        choice = policy.choose(_campaign(), SEG, "u")
    finally:
        task.cancel()
    fresh = policy.propensities(_campaign(), SEG)
    assert fresh["b"] > 0.7 and choice.propensity in (
        pytest.approx(fresh["a"]),
        pytest.approx(fresh["b"]),
    )


def test_arms_read_the_decayed_evidence_features_published_forward_to_now() -> None:
    """A v2 stats record carries evidence decayed per observation as of `updated_at`; the
    policy reads it forward to now with the record's half-life (no second decay setting)."""
    state = _state(_creative("a"))
    hour_ago_ms = int(time.time() * 1000) - 3_600_000
    record = {**_stats("a", SEG, 1000, 500), "updated_at": hour_ago_ms, "successes": 40.0,
              "failures": 24.0, "decay_half_life_s": 1800.0}  # fmt: skip
    state.apply_stats(f"c/{SEG}/a", record)
    (arm,) = _policy(state).arms("c", SEG, state.live_creatives("c", SEG))
    assert arm.alpha == pytest.approx(1.0 + 10.0, rel=1e-3)  # two half-lives: 40 -> 10
    assert arm.beta == pytest.approx(1.0 + 6.0, rel=1e-3)
    state.apply_stats(f"c/{SEG}/a", {**_stats("a", SEG, 1000, 500), "updated_at": hour_ago_ms})
    (plain,) = _policy(state).arms("c", SEG, state.live_creatives("c", SEG))
    assert (plain.alpha, plain.beta) == (501.0, 501.0)  # a v1 record: its counts, undecayed
