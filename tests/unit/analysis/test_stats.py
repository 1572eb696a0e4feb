"""Formulas pinned on hand-computed examples, and the sequential test / SRM check in simulation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from services.analysis import (
    compare_arms,
    prob_beats,
    relative_lift,
    sequential_test,
    srm_test,
    wilson_interval,
)
from services.analysis.stats import msprt_log_lambda, replicate_interval


def test_wilson_interval_matches_hand_computation() -> None:
    # 10 of 100, z = 1.96: centre (0.1 + z²/200) / (1 + z²/100) = 0.11480,
    # half-width z * sqrt(0.0009 + z²/40000) / (1 + z²/100) = 0.05957.
    low, high = wilson_interval(10, 100)
    assert float(low) == pytest.approx(0.05523, abs=5e-5)
    assert float(high) == pytest.approx(0.17437, abs=5e-5)


def test_wilson_interval_edges() -> None:
    low, high = wilson_interval(np.array([0, 50, 0]), np.array([50, 50, 0]))
    assert low[0] == 0.0 and 0 < high[0] < 0.1  # no successes: still a real upper bound
    assert high[1] == 1.0 and 0.9 < low[1] < 1
    assert np.isnan(low[2]) and np.isnan(high[2])  # no trials: no interval


def test_relative_lift_delta_method_matches_hand_computation() -> None:
    # 100/1000 vs 120/1000: lift 0.2; se(log ratio) = sqrt(0.88/120 + 0.9/100) = 0.127802;
    # exp(log 1.2 -/+ 1.96 * 0.127802) - 1 = -0.06589, +0.54158.
    lift = relative_lift((100, 1000), (120, 1000))
    assert lift.estimate == pytest.approx(0.2)
    assert lift.low == pytest.approx(-0.06589, abs=1e-4)
    assert lift.high == pytest.approx(0.54158, abs=1e-4)


def test_relative_lift_without_control_successes_is_undefined() -> None:
    lift = relative_lift((0, 1000), (5, 1000))
    assert np.isnan(lift.estimate)


def test_prob_beats_matches_closed_form() -> None:
    # Beta(2, 1) vs Beta(1, 2): P(T > C) = ∫ 2x (1 - (1 - x)²) dx = 4/3 - 1/2 = 5/6.
    assert prob_beats((0, 1), (1, 1)) == pytest.approx(5 / 6, abs=1e-6)
    assert prob_beats((30, 1000), (30, 1000)) == pytest.approx(0.5, abs=1e-6)


def test_prob_beats_agrees_with_monte_carlo_on_large_counts() -> None:
    rng = np.random.default_rng(3)
    c, t = (2_000, 100_000), (2_100, 100_000)
    draws_c = rng.beta(1 + c[0], 1 + c[1] - c[0], 400_000)
    draws_t = rng.beta(1 + t[0], 1 + t[1] - t[0], 400_000)
    assert prob_beats(c, t) == pytest.approx((draws_t > draws_c).mean(), abs=0.005)
    assert prob_beats(c, t) + prob_beats(t, c) == pytest.approx(1.0, abs=1e-6)


def test_srm_flags_skewed_split_and_passes_fair_one() -> None:
    skewed = srm_test([5200, 4800], [0.5, 0.5])
    assert skewed.chi2 == pytest.approx(16.0)  # 2 * 200² / 5000
    assert skewed.flagged and skewed.p_value < 0.001
    fair = srm_test([5030, 4970], [0.5, 0.5])
    assert not fair.flagged and fair.p_value > 0.5
    # Holdout 10%: 1000 of 10000 in control is fair, 880 is not.
    assert not srm_test([1000, 9000], [0.1, 0.9]).flagged
    assert srm_test([880, 9120], [0.1, 0.9]).flagged


def test_srm_false_alarm_rate_on_fair_splits_is_tiny() -> None:
    rng = np.random.default_rng(5)
    control = rng.binomial(20_000, 0.1, size=500)
    flags = [srm_test([c, 20_000 - c], [0.1, 0.9]).flagged for c in control]
    assert np.mean(flags) <= 0.01  # nominal 0.001


def _null_streams(rng: np.random.Generator, reps: int, looks: int, batch: int, p: float):
    s_c = rng.binomial(batch, p, size=(reps, looks)).cumsum(axis=1)
    s_t = rng.binomial(batch, p, size=(reps, looks)).cumsum(axis=1)
    n = np.arange(1, looks + 1) * batch
    return s_c, s_t, n


@pytest.mark.parametrize(("p", "batch"), [(0.05, 200), (0.3, 100)])
def test_sequential_test_peeking_after_every_batch_keeps_false_positives_at_alpha(
    p: float, batch: int
) -> None:
    rng = np.random.default_rng(11)
    reps, looks, alpha = 2_000, 50, 0.05
    s_c, s_t, n = _null_streams(rng, reps, looks, batch, p)
    # Always-valid p-value after each batch: min over looks so far of 1 / Lambda.
    log_lam = msprt_log_lambda(s_c, n, s_t, n)
    fpr = (np.exp(-log_lam.max(axis=1)) < alpha).mean()
    # The naive z-test, peeked at after every batch, is what the sequential test guards against.
    pooled = (s_c + s_t) / (2 * n)
    z = (s_t - s_c) / n / np.sqrt(pooled * (1 - pooled) * 2 / n)
    naive = (np.abs(z) > 1.96).any(axis=1).mean()
    assert fpr <= alpha + 0.01  # binomial sd of the estimate at 2000 reps is ~0.005
    assert naive > 3 * alpha


def test_sequential_test_detects_a_real_difference_and_bounds_it() -> None:
    rng = np.random.default_rng(2)
    looks, batch = 40, 500
    s_c = rng.binomial(batch, 0.10, size=looks).cumsum()
    s_t = rng.binomial(batch, 0.13, size=looks).cumsum()
    n = np.arange(1, looks + 1) * batch
    res = sequential_test(s_c, n, s_t, n)
    assert res.rejected and res.p_value < 0.05
    assert res.diff_low < 0.03 < res.diff_high  # the confidence sequence holds the truth
    assert res.diff_low > 0


def test_confidence_sequence_holds_the_true_difference_at_every_look() -> None:
    rng = np.random.default_rng(8)
    looks, batch, p_c, p_t = 30, 300, 0.10, 0.12
    n = np.arange(1, looks + 1) * batch
    misses = 0
    for _ in range(300):
        s_c = rng.binomial(batch, p_c, size=looks).cumsum()
        s_t = rng.binomial(batch, p_t, size=looks).cumsum()
        res = sequential_test(s_c, n, s_t, n)
        misses += not res.diff_low <= p_t - p_c <= res.diff_high
    assert misses / 300 <= 0.05


def test_sequential_test_waits_for_burn_in() -> None:
    res = sequential_test([1], [10], [9], [10])
    assert res.looks == 0 and res.p_value == 1.0 and not res.rejected


def test_compare_arms_is_the_demo_result_table() -> None:
    c = compare_arms((120, 10_000), (151, 10_050), expected_control_share=0.5)
    assert c.control.rate == pytest.approx(0.012)
    assert c.treatment.low < c.treatment.rate < c.treatment.high
    assert c.lift.estimate == pytest.approx(151 / 10_050 / 0.012 - 1)
    assert 0.9 < c.prob_treatment_beats_control < 1.0
    assert c.srm is not None and not c.srm.flagged
    assert c.sequential.looks == 1 and c.sequential.alpha == pytest.approx(0.05)
    json.dumps(c.to_dict())  # JSON-ready, no nan


def test_compare_arms_rejects_impossible_counts() -> None:
    with pytest.raises(ValueError, match="successes"):
        compare_arms((11, 10), (1, 10))
    with pytest.raises(ValueError, match="expected_control_share"):
        compare_arms((1, 10), (1, 10), expected_control_share=1.5)


def test_replicate_interval_is_students_t_over_the_runs() -> None:
    mean, low, high = replicate_interval([1.0, 2.0, 3.0, 4.0])
    half = 3.182446305284263 * np.std([1, 2, 3, 4], ddof=1) / 2  # t(3) at 97.5 %
    assert mean == 2.5
    assert low == pytest.approx(2.5 - half) and high == pytest.approx(2.5 + half)


def test_replicate_interval_covers_the_mean_at_its_level_with_few_runs() -> None:
    # three runs per cell: a normal (z) interval would cover ~82 %, the t interval 95 %
    rng = np.random.default_rng(7)
    draws = rng.normal(0.3, 1.0, size=(4000, 3))
    covered = [low <= 0.3 <= high for _, low, high in map(replicate_interval, draws)]
    assert 0.935 <= float(np.mean(covered)) <= 0.965


def test_replicate_interval_edges() -> None:
    mean, low, high = replicate_interval([])
    assert np.isnan(mean) and low == -np.inf and high == np.inf
    assert replicate_interval([0.4]) == (0.4, -np.inf, np.inf)  # no spread from one run
    assert replicate_interval([0.1, float("nan"), 0.1, float("inf")]) == (0.1, 0.1, 0.1)
