"""The campaign report and its effects tables, and what the terminal/JSON/HTML outputs show."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from rich.console import Console

from services.analysis import LoggedData, build_report
from services.analysis.effects import attribute_effects, creative_effects
from services.analysis.output import print_report, report_html

SEGMENTS = ("country=DE", "country=FR")


def _log(
    rng: np.random.Generator,
    n: int,
    rates: dict[tuple[str, str], float],
    mix: dict[str, list[float]],
    control_share: float = 0.5,
) -> LoggedData:
    """Rows over SEGMENTS; creative chosen per segment from `mix`; reward ~ Bernoulli(rates)."""
    creatives = sorted({c for _, c in rates})
    seg = rng.integers(0, len(SEGMENTS), n)
    cum = np.cumsum([mix[s] for s in SEGMENTS], axis=1)
    cre = (cum[seg] > rng.random(n)[:, None]).argmax(axis=1)
    rate = np.array([[rates.get((s, c), 0.0) for c in creatives] for s in SEGMENTS])
    p = rate[seg, cre]
    arm = np.where(rng.random(n) < control_share, "control", "optimized")
    return LoggedData.from_columns(
        context=np.array(SEGMENTS, dtype=object)[seg],
        action=np.array(creatives, dtype=object)[cre],
        reward=(rng.random(n) < p).astype(float),
        propensity=np.full(n, 0.5),
        timestamp_ms=np.arange(n),
        arm=arm,
    )


def test_creative_lift_is_over_its_segment_average_not_the_global_one() -> None:
    rng = np.random.default_rng(1)
    # "a" is shown mostly in DE, where everything clicks at 10%; in FR everything clicks at 2%.
    rates = {
        ("country=DE", "a"): 0.10,
        ("country=DE", "b"): 0.10,
        ("country=FR", "a"): 0.02,
        ("country=FR", "b"): 0.02,
    }
    data = _log(rng, 40_000, rates, {"country=DE": [0.9, 0.1], "country=FR": [0.1, 0.9]})
    effects = {e.group: e for e in creative_effects(data)}
    a, b = effects["a"], effects["b"]
    assert a.rate > 2 * b.rate  # naive comparison: "a" looks far better…
    assert a.lift_low < 0 < a.lift_high and b.lift_low < 0 < b.lift_high  # …but it is not
    assert a.low < a.rate < a.high


def test_attribute_values_with_a_real_effect_stand_out() -> None:
    rng = np.random.default_rng(2)
    rates = {(s, c): (0.12 if c in ("a", "c") else 0.06) for s in SEGMENTS for c in "abcd"}
    data = _log(rng, 40_000, rates, {s: [0.25] * 4 for s in SEGMENTS})
    attrs = {
        "a": {"headline": "Save", "font_scale": 1.0},
        "b": {"headline": "New", "font_scale": 1.2},
        "c": {"headline": "Save", "font_scale": 1.4},
        "d": {"headline": "New", "font_scale": 1.6},
    }
    effects = attribute_effects(data, attrs)
    by_value = {e.group: e for e in effects["headline"]}
    assert by_value["Save"].lift_low > 0.2 and by_value["New"].lift_high < -0.2
    assert len(effects["font_scale"]) == 4


def test_report_flags_a_broken_split_and_compares_arms() -> None:
    rng = np.random.default_rng(3)
    rates = {(s, c): 0.05 for s in SEGMENTS for c in "ab"}
    data = _log(rng, 20_000, rates, {s: [0.5, 0.5] for s in SEGMENTS}, control_share=0.5)
    arms = np.array([data.arms[a] for a in data.arm], dtype=object)
    fair = build_report("spring", data, decision_arms=arms, expected_control_share=0.5)
    assert fair.srm is not None and not fair.srm.flagged
    comp = fair.comparisons["optimized"]
    assert comp.sequential.looks > 100 and not comp.sequential.rejected
    assert 0.0 < comp.prob_treatment_beats_control < 1.0
    assert [r.arm for r in fair.arms] == ["control", "optimized"]
    assert sum(r.impressions for r in fair.arms) == 20_000

    skewed = build_report("spring", data, decision_arms=arms, expected_control_share=0.1)
    assert skewed.srm is not None and skewed.srm.flagged
    assert any("SAMPLE RATIO MISMATCH" in n for n in skewed.notes)


def test_three_arms_show_what_generation_adds_and_check_the_whole_split() -> None:
    rng = np.random.default_rng(6)
    n = 30_000
    u = rng.random(n)
    arm = np.where(u < 0.2, "control", np.where(u < 0.5, "catalog", "optimized"))
    p = np.select([arm == "control", arm == "catalog"], [0.02, 0.03], 0.04)
    data = LoggedData.from_columns(
        context=np.full(n, "country=DE", dtype=object),
        action=np.full(n, "a", dtype=object),
        reward=(rng.random(n) < p).astype(float),
        propensity=np.full(n, 0.5),
        timestamp_ms=np.arange(n),
        arm=arm,
    )
    arms = np.array([data.arms[a] for a in data.arm], dtype=object)
    rep = build_report("spring", data, decision_arms=arms, expected_control_share=0.2,
                       expected_catalog_share=0.3)  # fmt: skip
    g = rep.generation
    assert g is not None and g.lift.low > 0  # the full loop beats the catalog bandit
    assert g.control.rate == pytest.approx(0.03, abs=0.005)
    assert g.treatment.rate == pytest.approx(0.04, abs=0.005)
    assert set(rep.comparisons) == {"catalog", "optimized"}
    assert rep.srm is not None and not rep.srm.flagged
    assert rep.expected_shares == pytest.approx({"control": 0.2, "catalog": 0.3, "optimized": 0.5})
    wrong = build_report("spring", data, decision_arms=arms, expected_control_share=0.2,
                         expected_catalog_share=0.1)  # fmt: skip
    assert wrong.srm is not None and wrong.srm.flagged
    buf = io.StringIO()
    print_report(rep, Console(file=buf, width=240))
    text = buf.getvalue()
    assert "what generation adds" in text and "full loop vs catalog bandit" in text
    assert "what generation adds" in report_html(rep)


def test_report_without_holdout_share_says_srm_was_skipped() -> None:
    rng = np.random.default_rng(4)
    data = _log(rng, 2_000, {(s, "a"): 0.05 for s in SEGMENTS}, {s: [1.0] for s in SEGMENTS})
    rep = build_report("spring", data)
    assert rep.srm is None
    assert any("SRM check skipped" in n for n in rep.notes)


@pytest.fixture
def report():
    rng = np.random.default_rng(5)
    rates = {(s, c): 0.05 for s in SEGMENTS for c in "ab"}
    data = _log(rng, 5_000, rates, {s: [0.5, 0.5] for s in SEGMENTS})
    return build_report(
        "spring<&>",
        data,
        expected_control_share=0.5,
        attributes={"a": {"headline": "Save"}, "b": {"headline": "New"}},
    )


def test_outputs_show_the_same_numbers(report) -> None:
    buf = io.StringIO()
    print_report(report, Console(file=buf, width=200))
    text = buf.getvalue()
    assert (
        "Campaign spring<&>" in text and "P(beats control)" in text and "Attribute headline" in text
    )
    page = report_html(report)
    assert page.startswith("<!doctype html>") and "<svg" in page
    assert "spring&lt;&amp;&gt;" in page  # escaped
    assert not any(t in page for t in ("src=", "href=", "<link", "<script"))  # self-contained
    control_rate = f"{100 * report.arms[0].rewarded.rate:.2f}%"
    assert control_rate in text and control_rate in page
    data = json.loads(json.dumps(report.to_dict()))
    assert data["arms"][0]["arm"] == "control"
    assert data["comparisons"]["optimized"]["srm"] is None  # SRM lives at report level
    assert data["srm"]["flagged"] in (True, False)


def test_empty_range_gives_an_empty_report_not_a_crash() -> None:
    empty = LoggedData.from_columns(context=[], action=[], reward=[], propensity=[], arm=[])
    rep = build_report(
        "spring",
        empty,
        decision_arms=np.array([], dtype=object),
        expected_control_share=0.1,
        attributes={"a": {"headline": "x"}},
    )
    assert rep.arms == [] and rep.creatives == [] and rep.attributes == {}
    assert report_html(rep).startswith("<!doctype html>")
    json.dumps(rep.to_dict())


def test_control_without_outcomes_yet_still_renders() -> None:
    data = LoggedData.from_columns(
        context=["s"] * 300,
        action=["a"] * 300,
        reward=[0.0] * 300,
        propensity=[1.0] * 300,
        arm=["optimized"] * 300,
    )
    arms = np.array(["control"] * 30 + ["optimized"] * 300, dtype=object)
    rep = build_report("spring", data, decision_arms=arms, expected_control_share=0.1)
    rows = {r.arm: r for r in rep.arms}
    assert rows["control"].impressions == 30 and rows["control"].outcomes == 0
    assert rows["control"].pending == 30
    buf = io.StringIO()
    print_report(rep, Console(file=buf, width=200))
    json.dumps(rep.to_dict())


def test_decisions_never_shown_are_counted_and_left_out_of_rates() -> None:
    data = LoggedData.from_columns(
        context=["country=DE"] * 6,
        action=["a"] * 6,
        reward=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
        propensity=[1.0] * 6,
        arm=["optimized"] * 6,
        extra={"shown": np.array([True, True, False, False, True, True])},
    )
    rep = build_report("c", data, decision_arms=np.array(["optimized"] * 7, dtype=object))
    (row,) = rep.arms
    assert (row.impressions, row.outcomes, row.unshown, row.pending) == (7, 4, 2, 1)
    assert row.rewarded.rate == 0.5  # 2 clicks of 4 shown, not 2 of 6
    assert any("2 decisions were never shown" in n for n in rep.notes)
    assert "never shown" in report_html(rep)
