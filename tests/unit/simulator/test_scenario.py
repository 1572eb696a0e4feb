"""Scenarios and their hidden ground truth: parsing, the reward model, the oracle."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from services.common.campaign import SpecError
from services.simulator.groundtruth import GroundTruth
from services.simulator.scenario import load_scenario, parse_scenario

SCENARIO: dict[str, Any] = {
    "campaign": {
        "campaign_id": "t",
        "name": "T",
        "attributes": [
            {"name": "headline", "kind": "categorical", "values": ["a", "b", "c"]},
            {"name": "cta", "kind": "categorical", "values": ["x", "y"]},
            {"name": "font_scale", "kind": "numeric", "min": 1.0, "max": 2.0},
            {"name": "background", "kind": "color"},
        ],
        "segment_keys": ["device"],
        "attribution_window": 5,
        "forbidden": [{"headline": "c", "cta": "y"}],
        "seeds": [
            {
                "name": "s1",
                "attributes": {
                    "headline": "a",
                    "cta": "x",
                    "font_scale": 1.0,
                    "background": "#000000",
                },
            },
            {
                "name": "s2",
                "attributes": {
                    "headline": "b",
                    "cta": "x",
                    "font_scale": 1.2,
                    "background": "#0000ff",
                },
            },
        ],
    },
    "audience": {
        "rate": 5,
        "segments": [
            {"name": "mob", "share": 3, "context": {"device": "mobile"}},
            {"name": "desk", "share": 1, "context": {"device": "desktop"}},
        ],
    },
    "truth": {
        "base_logit": -2.0,
        "effects": [
            {
                "attribute": "headline",
                "values": {"b": 0.5, "c": 1.0},
                "segments": {"desk": {"values": {"a": 1.5}}},
            },
            {
                "attribute": "font_scale",
                "peak": 1.8,
                "weight": 4.0,
                "segments": {"desk": {"peak": 1.0}},
            },
            {
                "attribute": "background",
                "target": "#ff8000",
                "weight": 2.0,
                "segments": {"desk": {"target": "#000000"}},
            },
        ],
        "interactions": [{"when": {"headline": "c", "cta": "y"}, "logit": 5.0}],
    },
}


def scenario_with(path: str, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(SCENARIO)
    node = data
    *parents, last = path.split(".")
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    node[last] = value
    return data


def test_bundled_scenarios_parse_and_put_the_optimum_outside_the_catalog() -> None:
    for name in ("demo", "bench", "e2e"):
        scenario = load_scenario(name)
        truth = GroundTruth(scenario)
        gaps = [truth.optimum(s).p_click / truth.best_catalog(s).p_click for s in truth.segments]
        assert max(gaps) > 1.5, f"{name}: some segment must reward going beyond the catalog"
        seeds = [s.attributes for s in scenario.campaign.seeds]
        for s in truth.segments:
            assert truth.optimum(s).attributes not in seeds


def test_segment_keys_and_shares() -> None:
    scenario = parse_scenario(SCENARIO)
    assert [scenario.segment_key(s) for s in scenario.audience.segments] == [
        "device=mobile",
        "device=desktop",
    ]
    assert scenario.shares() == [0.75, 0.25]


def test_truth_has_segment_interactions() -> None:
    truth = GroundTruth(parse_scenario(SCENARIO))
    seed1 = SCENARIO["campaign"]["seeds"][0]["attributes"]
    # headline 'a' is worth nothing on mobile but +1.5 on desktop; desktop likes black and 1.0.
    assert truth.logit("mob", seed1) == pytest.approx(
        -2.0 - 4.0 * 0.8**2 - 2.0 * (1 + (128 / 255) ** 2)
    )
    assert truth.logit("desk", seed1) == pytest.approx(-2.0 + 1.5)
    assert truth.p_click("desk", seed1) > truth.p_click("mob", seed1)
    assert truth.best_catalog("desk").creative_id == "t-s1"


def test_oracle_finds_the_optimum_and_respects_forbidden_combinations() -> None:
    truth = GroundTruth(parse_scenario(SCENARIO))
    best = truth.optimum("mob")
    # c+y would earn +5 but is forbidden: the best allowed is headline c with cta x.
    assert best.attributes["headline"] == "c" and best.attributes["cta"] == "x"
    assert best.attributes["font_scale"] == 1.8 and best.attributes["background"] == "#ff8000"
    assert best.p_click == pytest.approx(1 / (1 + pow(2.718281828459045, 1.0)), rel=1e-6)
    assert best.reward > truth.best_catalog("mob").reward
    assert truth.optimum("desk").attributes["background"] == "#000000"


def test_unparseable_served_attributes_count_as_no_effect() -> None:
    truth = GroundTruth(parse_scenario(SCENARIO))
    assert truth.logit("mob", {}) == -2.0
    assert truth.logit("mob", {"font_scale": "big", "background": "red"}) == -2.0


def test_weighted_reward_counts_conversions() -> None:
    data = copy.deepcopy(SCENARIO)
    data["campaign"]["reward"] = {"kind": "weighted", "weights": {"click": 1.0, "conversion": 10.0}}
    data["truth"]["conversion"] = {"rate": 0.5}
    truth = GroundTruth(parse_scenario(data))
    seed = SCENARIO["campaign"]["seeds"][0]["attributes"]
    assert truth.expected_reward("desk", seed) == pytest.approx(truth.p_click("desk", seed) * 6.0)


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("truth.effects.0.attribute", "colour", "truth.effects[0] (colour): not an attribute"),
        ("truth.effects.1.peak", None, "a numeric effect needs `peak`"),
        ("truth.effects.2.target", "orange", "truth.effects[2].target: String should match"),
        ("truth.effects.0.values", {"zzz": 1.0}, "truth.effects[0] (headline).values: ['zzz']"),
        ("truth.segments", {"tablet": {"base_logit": 0}}, "truth.segments.tablet: not an audience"),
        (
            "audience.segments.1.context",
            {"device": "mobile"},
            "context maps to segment 'device=mobile'",
        ),
        ("audience.rate", 0, "audience.rate: Input should be greater than 0"),
        ("campaign.holdout_share", 1.5, "campaign.holdout_share: Input should be less than 1"),
    ],
)
def test_bad_scenarios_name_the_field(path: str, value: Any, expected: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_scenario(scenario_with(path, value), "s.yaml")
    assert expected in str(info.value)


def test_unknown_scenario_name_lists_the_bundled_ones() -> None:
    with pytest.raises(SpecError, match=r"not a bundled one \[.*'demo'"):
        load_scenario("nope")
