"""A ground truth that drifts, end to end through the real counting and serving code: the
simulator's truth draws clicks, features' counters fold them in with per-observation decay,
the stats record goes into inference's state, and the policy's posteriors follow."""

from __future__ import annotations

import random
import time

import pytest

from services.features.stats import Counters, StatsKey, stats_record
from services.inference.policy import Policy
from services.inference.state import State
from services.simulator.groundtruth import GroundTruth
from services.simulator.scenario import load_scenario

HALF_LIFE_S = 60.0
SWITCH_S = 300.0  # drift.yaml: "Flash deal" wears out, "New in" becomes the favourite
PER_SECOND = 20  # impressions per creative per second, uniform (as the control arm serves)


def _play(until_s: float, half_life_s: float | None) -> tuple[Policy, State, GroundTruth]:
    """Uniform traffic on every seed of the drift scenario's mobile segment from 0 to
    `until_s`, played so that `until_s` is now on the wall clock; stats into inference."""
    scenario = load_scenario("drift")
    truth = GroundTruth(scenario)
    rng = random.Random(7)
    now_ms = int(time.time() * 1000)
    t0_ms = now_ms - int(until_s * 1000)
    state = State()
    state.apply_campaign("drift", {"campaign_id": "drift", "holdout_share": 0.0})
    segment = "device=mobile"
    for seed in scenario.campaign.seeds:
        cid = scenario.campaign.seed_id(seed)
        state.apply_creative(cid, {"creative_id": cid, "campaign_id": "drift", "segment": None,
                                   "origin": "catalog", "status": "live",
                                   "attributes": dict(seed.attributes)})  # fmt: skip
        counters = Counters()
        for step in range(int(until_s * PER_SECOND)):
            at_s = step / PER_SECOND
            clicked = rng.random() < truth.p_click("mobile", seed.attributes, at_s)
            reward = {"reward": float(clicked), "clicked": clicked, "converted": False}
            counters = counters.add(reward, t0_ms + int(at_s * 1000), half_life_s)
        key = StatsKey("drift", segment, cid)
        record = stats_record(key, counters, prior_alpha=1.0, prior_beta=1.0,
                              half_life_s=half_life_s, window_ms=1000, now_ms=now_ms)  # fmt: skip
        state.apply_stats(key.key, record)
    policy = Policy(state, exploration_floor=0.0, n_draws=1000, refresh_ms=0,
                    backoff_impressions=0, seed=1)  # fmt: skip
    return policy, state, truth


def _means(policy: Policy, state: State) -> dict[str, float]:
    arms = policy.arms("drift", "device=mobile", state.live_creatives("drift", "device=mobile"))
    return {a.creative_id: a.alpha / (a.alpha + a.beta) for a in arms}


def _ctr(truth: GroundTruth, headline: str, at_s: float) -> float:
    seed = next(s for s in truth.spec.seeds if s.attributes["headline"] == headline)
    return truth.p_click("mobile", seed.attributes, at_s)


@pytest.mark.parametrize("half_life_s", [HALF_LIFE_S, None])
def test_posterior_follows_a_worn_out_creative_within_the_half_life(
    half_life_s: float | None,
) -> None:
    policy, state, truth = _play(SWITCH_S + HALF_LIFE_S, half_life_s)
    before, after = _ctr(truth, "Flash deal", 0.0), _ctr(truth, "Flash deal", SWITCH_S + 1)
    moved = (before - _means(policy, state)["drift-flash"]) / (before - after)
    if half_life_s:  # one half-life after the switch: at least half way to the new truth
        assert moved > 0.45
    else:  # without decay five minutes of the old truth outweigh one minute of the new
        assert moved < 0.25


@pytest.mark.parametrize("half_life_s", [HALF_LIFE_S, None])
def test_the_new_favourite_takes_over_after_two_half_lives(half_life_s: float | None) -> None:
    policy, _, truth = _play(SWITCH_S + 2 * HALF_LIFE_S, half_life_s)
    now = SWITCH_S + 2 * HALF_LIFE_S
    assert (
        _ctr(truth, "New in", now)
        > _ctr(truth, "Spring sale", now)
        > _ctr(truth, "Flash deal", now)
    )
    p = policy.propensities({"campaign_id": "drift", "holdout_share": 0.0}, "device=mobile")
    if half_life_s:
        assert p["drift-new"] > 0.9
    else:
        assert p["drift-flash"] + p["drift-spring"] > 0.9  # still serving the stale winner


def test_drift_ramps_and_the_oracle_follows() -> None:
    truth = GroundTruth(load_scenario("drift"))
    assert truth.optimum("mobile", 0.0).attributes["headline"] == "Flash deal"
    assert truth.optimum("mobile", SWITCH_S + 1).attributes["headline"] == "New in"
    assert truth.best_catalog("mobile", SWITCH_S + 1).creative_id == "drift-new"
