"""Film previews as slates: the viewer's vote, the truth's numbers, scenario validation."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.campaign import SpecError
from services.simulator.feedback import VOTE
from services.simulator.groundtruth import GroundTruth
from services.simulator.scenario import load_scenario, parse_scenario
from services.simulator.slates import choose_vote, vote_chance

probs = st.floats(0.0, 1.0, allow_nan=False)


@given(st.lists(st.tuples(probs, st.booleans()), max_size=4), st.integers(0, 2**32))
def test_a_vote_goes_to_an_engaged_slot_of_a_slate_of_two_or_more(
    slots: list[tuple[float, bool]], seed: int
) -> None:
    ps = [p for p, _ in slots]
    engaged = [e and p > 0 for p, e in slots]  # a slot with p 0 never engages
    pick = choose_vote(ps, engaged, random.Random(seed))
    if len(slots) < 2 or not any(engaged):
        assert pick is None
    else:
        assert pick is not None and 0 <= pick < len(slots) and engaged[pick]


def test_a_slate_and_its_engagement_must_match() -> None:
    with pytest.raises(ValueError, match="2 probabilities for 1 slots"):
        choose_vote([0.1, 0.2], [True], random.Random(0))


def test_the_vote_is_shared_in_proportion_to_appeal_not_uniformly() -> None:
    rng = random.Random(3)
    wins = sum(choose_vote([0.8, 0.2], [True, True], rng) == 0 for _ in range(20_000))
    assert wins / 20_000 == pytest.approx(0.8, abs=0.015)  # uniform would give 0.5


@given(st.lists(probs, min_size=2, max_size=4))
def test_every_viewer_with_an_engaged_slot_casts_exactly_one_vote(ps: list[float]) -> None:
    """Σ_i P(i engaged) · P(i wins | engaged) = P(some slot engaged)."""
    total = sum(p * vote_chance(p, ps[:i] + ps[i + 1 :]) for i, p in enumerate(ps))
    assert total == pytest.approx(1 - math.prod(1 - p for p in ps), abs=1e-9)


@given(probs, probs, st.lists(probs, min_size=1, max_size=3))
def test_a_more_appealing_variant_wins_more_often(a: float, b: float, rivals: list[float]) -> None:
    lo, hi = sorted((a, b))
    assert vote_chance(lo, rivals) <= vote_chance(hi, rivals) + 1e-12
    assert vote_chance(a, []) == 0.0  # alone on screen: nothing to vote between


def test_the_slot_truth_is_the_mean_reward_of_the_viewer_model() -> None:
    """slate_reward (closed form, exact over the opponents) equals the mean reward of
    simulated viewers who engage, watch and vote as the player makes them."""
    truth = GroundTruth(load_scenario("film"))
    feedback = truth.feedback
    assert feedback is not None
    ps = [0.55, 0.3, 0.7]
    rng = random.Random(9)
    totals, draws = [0.0] * 3, 30_000
    for _ in range(draws):
        engaged = [rng.random() < p for p in ps]
        events = [feedback.events(e, rng, vote=False) for e in engaged]
        pick = choose_vote(ps, engaged, rng)
        if pick is not None:
            events[pick].append(VOTE)
        for i in range(3):
            totals[i] += feedback.reward(events[i])
    for i, p in enumerate(ps):
        expected = truth.slate_reward(p, ps[:i] + ps[i + 1 :])
        assert totals[i] / draws == pytest.approx(expected, abs=0.01), i
    # a slot alone on screen earns its watching, no vote; in a slate it can win one
    assert truth.slate_reward(0.55, []) < truth.slate_reward(0.55, [0.3])
    assert truth.slate_reward(0.55, [0.3]) > truth.slate_reward(0.55, [0.7])


def test_slate_validation_names_the_problem() -> None:
    film = load_scenario("film").model_dump()
    assert load_scenario("film").audience.slate == 2
    for bad in (0, 5):
        film["audience"]["slate"] = bad
        with pytest.raises(SpecError, match=r"audience\.slate"):
            parse_scenario(film)
    film["audience"]["slate"] = 3
    film["campaign"]["reward"] = {"kind": "click"}
    with pytest.raises(SpecError, match=r"need campaign\.reward kind `events`"):
        parse_scenario(film)
    banner = load_scenario("e2e").model_dump()
    banner["audience"]["slate"] = 2
    with pytest.raises(SpecError, match=r"a `vote` feedback event\); domain 'banner' has"):
        parse_scenario(banner)
    banner["audience"]["slate"] = 1
    assert parse_scenario(banner).audience.slate == 1
    music = load_scenario("music").model_dump()
    music["audience"]["slate"] = 2
    with pytest.raises(SpecError, match="domain 'music'"):
        parse_scenario(music)
