"""Candidate creatives: generated, gated, scored, deduplicated, with a prior from the score."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from services.inference.admission import admit, distance
from services.inference.candidates import prior_from_prediction, propose
from services.inference.models import ModelBundle
from tests.unit.inference import onnx_fixtures as fx

SEG = fx.SEGMENTS[1]


@pytest.fixture(scope="module")
def bundle() -> ModelBundle:
    # Dark backgrounds and light text, so most (not all) candidates pass the contrast rule.
    bias = np.zeros(fx.CREATIVE_DIM, dtype=np.float32)
    bias[8:11], bias[11:14] = -2.0, 2.0
    return ModelBundle.load(fx.metadata(), fx.generator(bias=bias), fx.reward_model())


def test_best_admissible_candidates_with_priors(bundle: ModelBundle) -> None:
    rules = fx.campaign()
    out = propose(bundle, rules, SEG, [], n_generate=200, n_admit=4, rng=np.random.default_rng(0))
    assert len(out) == 4
    rewards = [c["predicted_reward"] for c in out]
    assert rewards == sorted(rewards, reverse=True)
    space = {a["name"]: a for a in rules["attributes"]}
    for c in out:
        assert set(c) == {"attributes", "predicted_reward", "prior_alpha", "prior_beta"}
        assert admit(c["attributes"], rules, []).admitted
        # The reward model favours "Last chance": the best candidates carry it.
        assert c["attributes"]["headline"] == "Last chance"
        assert bundle.score(SEG, [c["attributes"]])[0] == pytest.approx(c["predicted_reward"])
        mean = c["prior_alpha"] / (c["prior_alpha"] + c["prior_beta"])
        assert mean == pytest.approx(c["predicted_reward"])
        assert c["prior_alpha"] + c["prior_beta"] == pytest.approx(20.0)
    for a, b in itertools.combinations(out, 2):
        assert distance(a["attributes"], b["attributes"], space) >= 0.05


def test_live_creatives_and_rules_are_respected(bundle: ModelBundle) -> None:
    rules = fx.campaign()
    first = propose(bundle, rules, SEG, [], n_generate=100, n_admit=2, rng=np.random.default_rng(1))
    live = [{"creative_id": "c1", "attributes": first[0]["attributes"]}]
    again = propose(
        bundle, rules, SEG, live, n_generate=100, n_admit=2, rng=np.random.default_rng(1)
    )
    space = {a["name"]: a for a in rules["attributes"]}
    assert again and all(
        distance(c["attributes"], first[0]["attributes"], space) >= 0.05 for c in again
    )
    banned = fx.campaign(forbidden=[{"headline": "Last chance"}])
    out = propose(bundle, banned, SEG, [], n_generate=200, n_admit=3, rng=np.random.default_rng(2))
    assert out and all(c["attributes"]["headline"] != "Last chance" for c in out)


def test_nothing_admissible_gives_nothing(bundle: ModelBundle) -> None:
    impossible = fx.campaign(min_contrast=22.0)
    assert (
        propose(bundle, impossible, SEG, [], n_generate=50, n_admit=3, rng=np.random.default_rng(0))
        == []
    )
    rng = np.random.default_rng(0)
    assert propose(bundle, fx.campaign(), SEG, [], n_generate=50, n_admit=0, rng=rng) == []


def test_prior_from_prediction() -> None:
    assert prior_from_prediction(0.25) == pytest.approx((5.0, 15.0))
    assert prior_from_prediction(0.25, 100) == pytest.approx((25.0, 75.0))
    a, b = prior_from_prediction(0.0)
    assert a > 0 and a / (a + b) == pytest.approx(0.001)
    assert prior_from_prediction(float("nan")) == pytest.approx((10.0, 10.0))
