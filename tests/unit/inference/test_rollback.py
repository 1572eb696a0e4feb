"""The sequential rollback test: fires on a real drop, rarely on noise, and ends."""

from __future__ import annotations

import numpy as np

from services.inference.rollback import SequentialTest


def _run(test: SequentialTest, p_new: float, p_base: float, rng: np.random.Generator) -> tuple:
    """Feed batches of 50 impressions per side until a verdict; (verdict, new impressions)."""
    n_new = n_base = 0
    r_new = r_base = 0.0
    while True:
        n_new += 50
        n_base += 50
        r_new += rng.binomial(50, p_new)
        r_base += rng.binomial(50, p_base)
        verdict = test.verdict(n_new, r_new, n_base, r_base)
        if verdict != "wait":
            return verdict, n_new


def test_a_clear_drop_is_rolled_back_quickly() -> None:
    rng = np.random.default_rng(1)
    test = SequentialTest()
    runs = [_run(test, 0.02, 0.10, rng) for _ in range(50)]
    assert all(v == "worse" for v, _ in runs)
    assert np.median([n for _, n in runs]) < 1000


def test_equal_rates_rarely_fire_and_the_watch_ends() -> None:
    rng = np.random.default_rng(2)
    test = SequentialTest(horizon_impressions=5000)
    runs = [_run(test, 0.08, 0.08, rng) for _ in range(200)]
    false_alarms = sum(v == "worse" for v, _ in runs)
    assert false_alarms <= 0.05 * len(runs) + 3  # α = 0.05 with room for sampling error
    assert all(n <= 5000 for _, n in runs)  # never waits past the horizon


def test_a_better_model_is_kept() -> None:
    rng = np.random.default_rng(3)
    test = SequentialTest(horizon_impressions=3000)
    assert all(_run(test, 0.12, 0.08, rng)[0] == "keep" for _ in range(20))


def test_no_look_before_min_impressions() -> None:
    test = SequentialTest(min_impressions=1000)
    assert test.verdict(999, 0, 999, 200) == "wait"
    assert test.verdict(1000, 0, 1000, 200) == "worse"
