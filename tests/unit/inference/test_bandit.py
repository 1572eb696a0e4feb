"""Bandit acceptance (issue: inference): posteriors move with rewards, propensities sum to 1 and
match what is served, holdout share, a better creative wins, retirement by prob_best."""

from __future__ import annotations

import threading
import time
import uuid

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special, stats

from services.inference.bandit import (
    Arm,
    Retirement,
    ThompsonBandit,
    backoff,
    holdout_arm,
    posterior,
    prob_best,
    thompson_probabilities,
    uniform_choice,
)


def _mean(ab: tuple[float, float]) -> float:
    return ab[0] / (ab[0] + ab[1])


def test_posterior_moves_with_rewards() -> None:
    prior = posterior(1.0, 1.0, 0, 0)
    assert prior == (1.0, 1.0)
    after_clicks = posterior(1.0, 1.0, 30, 100)
    after_misses = posterior(1.0, 1.0, 2, 100)
    assert after_clicks == (31.0, 71.0)
    assert _mean(after_clicks) > 0.25 > 0.05 > _mean(after_misses)
    assert _mean(posterior(1.0, 1.0, 31, 101)) > _mean(after_clicks)  # one more click: up
    assert _mean(posterior(1.0, 1.0, 30, 101)) < _mean(after_clicks)  # one more miss: down
    # More evidence at the same rate: same mean, narrower posterior.
    a1, b1 = posterior(1.0, 1.0, 10, 100)
    a2, b2 = posterior(1.0, 1.0, 100, 1000)
    assert stats.beta(a2, b2).std() < stats.beta(a1, b1).std() / 2


def test_posterior_ignores_impossible_counts() -> None:
    assert posterior(1.0, 1.0, 500, 100) == (101.0, 1.0)  # clicks clipped to impressions
    assert posterior(1.0, 1.0, float("nan"), -5) == (1.0, 1.0)


def test_backoff_shrinks_sparse_segment_toward_campaign_rate() -> None:
    # Segment: 1 click in 5 impressions (20 %); the rest of the campaign: 100 in 10_000 (1 %).
    s, n = backoff(1, 5, 101, 10_005, pseudo_count=20, min_impressions=200)
    assert n == pytest.approx(5 + 20 * (1 - 5 / 200))
    assert s / n < 0.06  # pulled from 20 % toward 1 %
    # A segment with enough impressions keeps its own counts.
    assert backoff(40, 400, 141, 10_400, pseudo_count=20, min_impressions=200) == (40, 400)
    # No evidence elsewhere in the campaign: nothing to borrow.
    assert backoff(1, 5, 1, 5) == (1, 5)
    # Never borrows more impressions than the rest of the campaign has.
    assert backoff(0, 0, 1, 3, pseudo_count=20) == pytest.approx((1, 3))


ARMS = [
    Arm("a", 30, 970),
    Arm("b", 34, 966),
    Arm("c", 5, 95),
    Arm("d", 1, 1),
    Arm("e", 0.6, 19.4),
]


def test_propensities_sum_to_one_with_floor() -> None:
    bandit = ThompsonBandit(exploration_floor=0.05, rng=np.random.default_rng(0))
    p = bandit.propensities(ARMS)
    assert p.sum() == pytest.approx(1.0, abs=1e-12)
    assert (p >= 0.05 / len(ARMS) - 1e-12).all()
    snap = bandit.snapshot(ARMS)
    assert snap.error < 1e-3
    assert not p.flags.writeable
    assert bandit.cached(ARMS) is snap
    assert bandit.cached([*ARMS[:-1], Arm("e", 0.6, 19.5)]) is None  # moved: not yet computed


def test_quadrature_matches_monte_carlo() -> None:
    exact, error = thompson_probabilities(ARMS)
    mc = prob_best(ARMS, 400_000, rng=np.random.default_rng(1))
    assert error < 1e-3
    # 4 standard errors of the Monte-Carlo estimate plus the quadrature's error.
    tol = 4 * np.sqrt(mc * (1 - mc) / 400_000) + error + 1e-4
    assert np.all(np.abs(exact - mc) <= tol), (exact, mc)


def _dense_reference(arms: list[Arm], levels: int = 1000) -> np.ndarray:
    """P(best) with betainc evaluated on every arm's 1000 quantiles (halved): slow, exact.
    In 1 − θ when the best mean is above 1/2, as quantiles near 1 lose float resolution."""
    a = np.array([x.alpha for x in arms])
    b = np.array([x.beta for x in arms])
    reflect = (a / (a + b)).max() > 0.5
    if reflect:
        a, b = b, a
    q = special.betaincinv(a[:, None], b[:, None], ((np.arange(levels) + 0.5) / levels)[None, :])
    x = np.unique(np.concatenate([[0.0, 1.0], q.ravel()]))
    x = np.sort(np.concatenate([x, 0.5 * (x[:-1] + x[1:])]))
    cdf = special.betainc(a[:, None], b[:, None], x[None, :])
    if reflect:
        cdf = 1.0 - cdf[:, ::-1]
    ones = np.ones((1, x.size))
    others = np.cumprod(np.vstack([ones, cdf[:-1]]), axis=0)
    others *= np.cumprod(np.vstack([ones, cdf[:0:-1]]), axis=0)[::-1]
    p = (np.diff(cdf, axis=1) * (others[:, :-1] + others[:, 1:]) * 0.5).sum(axis=1)
    return p / p.sum()


@pytest.mark.parametrize(
    "arms",
    [
        ARMS,
        [Arm(str(i), 1 + 40 * (i % 5), 800 + 150 * i) for i in range(20)],  # large counts
        [Arm(str(i), 10 + 0.5 * i, 300) for i in range(10)],  # smooth, overlapping
        [Arm("a", 1e4, 4e5), Arm("b", 1.02e4, 4e5), Arm("c", 0.3, 10)],  # very peaked
        [Arm("a", 0.02, 19.98), Arm("b", 0.05, 30), Arm("c", 1, 1)],  # tiny priors
        [Arm(str(i), 1 + i % 3, 10 + 2 * i) for i in range(20)],  # early, sparse
        [Arm("a", 2020, 0.02), Arm("b", 16, 0.06), Arm("c", 970, 30)],  # crowded near 1
    ],
    ids=["mixed", "large", "smooth", "peaked", "tiny", "sparse", "near-one"],
)
def test_quadrature_error_is_small_and_estimated_conservatively(arms: list[Arm]) -> None:
    p, error = thompson_probabilities(arms)
    true_error = np.abs(p - _dense_reference(arms)).sum()
    assert error < 2e-3 and true_error < 1e-3
    # The estimate over-states the error (about 3x), except for extremely skewed posteriors
    # (alpha or beta far below 1), where it can under-state it by up to 2x.
    assert true_error <= 2 * error + 1e-9
    if min(min(x.alpha, x.beta) for x in arms) >= 0.1:
        assert true_error <= error + 1e-9


def test_symmetric_arms_get_equal_share() -> None:
    p = ThompsonBandit().propensities([Arm(str(i), 3, 7) for i in range(20)])
    assert p == pytest.approx(np.full(20, 0.05), abs=1e-9)


@pytest.mark.parametrize("method", ["quadrature", "monte_carlo"])
def test_choices_follow_logged_propensities(method: str) -> None:
    """Chi-square: served frequencies match the propensities the bandit reports."""
    bandit = ThompsonBandit(0.1, n_draws=2000, rng=np.random.default_rng(2), method=method)
    n = 20_000
    counts = np.zeros(len(ARMS))
    for _ in range(n):
        i, prop = bandit.choose(ARMS)
        counts[i] += 1
    p = bandit.propensities(ARMS)
    assert prop == p[i]
    result = stats.chisquare(counts, n * p)
    assert result.pvalue > 1e-3, (counts / n, p)


def test_unusable_posteriors_do_not_break_the_bandit() -> None:
    bandit = ThompsonBandit(rng=np.random.default_rng(7))
    arms = [Arm("nan", float("nan"), 3), Arm("inf", float("inf"), 1), Arm("zero", 0, 0)]
    p = bandit.propensities(arms)
    assert p.sum() == pytest.approx(1.0) and (p > 0).all()
    assert bandit.choose(arms)[1] > 0


def test_single_arm_and_no_arms() -> None:
    bandit = ThompsonBandit()
    assert bandit.choose([Arm("only", 1, 1)]) == (0, 1.0)
    with pytest.raises(ValueError, match="no live creatives"):
        bandit.choose([])


def test_choose_is_fast_for_twenty_arms() -> None:
    bandit = ThompsonBandit(rng=np.random.default_rng(3))
    arms = [Arm(str(i), 1 + i, 200 + 13 * i) for i in range(20)]
    bandit.choose(arms)  # computes and caches this snapshot
    laps = []
    for _ in range(500):
        t = time.perf_counter()
        bandit.choose(arms)
        laps.append(time.perf_counter() - t)
    assert np.median(laps) < 1e-3


def test_concurrent_choices_are_safe() -> None:
    """Request threads choosing while a refresh thread computes new snapshots."""
    bandit = ThompsonBandit(rng=np.random.default_rng(8), cache_size=4)  # evicts all along
    pools = [[Arm(str(i), 1 + i + k, 50 + 3 * i) for i in range(5)] for k in range(10)]
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            for r in range(150):
                arms = pools[(r + offset) % len(pools)]
                i, p = bandit.choose(arms)
                assert p == bandit.propensities(arms)[i] > 0
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_holdout_share_and_stability() -> None:
    users = [uuid.UUID(int=i).hex for i in range(20_000)]
    arms = [holdout_arm(u, "spring", 0.1) for u in users]
    control = arms.count("control")
    sd = np.sqrt(20_000 * 0.1 * 0.9)
    assert abs(control - 2000) < 4 * sd
    assert set(arms) == {"control", "optimized"}
    assert [holdout_arm(u, "spring", 0.1) for u in users[:100]] == arms[:100]  # stable
    assert all(holdout_arm(u, "spring", 0.0) == "optimized" for u in users[:100])
    # Another campaign draws its own holdout (salted): overlap is about share².
    other = [holdout_arm(u, "autumn", 0.1) for u in users]
    both = sum(a == b == "control" for a, b in zip(arms, other, strict=True))
    assert both < 0.02 * 20_000


def test_better_creative_wins_most_traffic() -> None:
    """Four creatives, one with twice the click rate: after 6000 simulated rewards (posteriors
    refreshed every 100, as the service does on a timer) it gets most of the traffic."""
    rng = np.random.default_rng(4)
    true_ctr = np.array([0.05, 0.05, 0.05, 0.10])
    clicks, shows = np.zeros(4), np.zeros(4)
    bandit = ThompsonBandit(0.02, rng=np.random.default_rng(5))
    late = np.zeros(4)
    for step in range(60):
        arms = [
            Arm(str(k), *posterior(1.0, 1.0, clicks[k], shows[k])) for k in range(len(true_ctr))
        ]
        for _ in range(100):
            i, _ = bandit.choose(arms)
            shows[i] += 1
            clicks[i] += rng.random() < true_ctr[i]
            if step >= 50:
                late[i] += 1
    assert late[3] / late.sum() > 0.7, late


def test_prob_best_and_retirement() -> None:
    arms = [
        Arm("good", 60, 940),
        Arm("ok", 55, 945),
        Arm("bad", 10, 990),
        Arm("fresh", 0.1, 29.9),  # barely tried: too little evidence to retire
    ]
    p = prob_best(arms)
    assert p.sum() == pytest.approx(1.0)
    assert p[2] < 1e-4 and p[3] < 0.01 and p[0] > p[1] > 0.1
    retire = Retirement(threshold=0.01, patience=2, min_live=2)
    assert retire.review("spring/*", arms) == []  # first strike
    assert retire.review("spring/*", arms) == ["bad"]  # stayed below: retire
    assert retire.review("spring/*", arms, protected={"bad"}) == []  # catalog kept
    # Never below min_live arms.
    pair = [Arm("good", 600, 9400), Arm("bad", 10, 990)]
    keep = Retirement(threshold=0.01, patience=1, min_live=2)
    assert keep.review("spring/x", pair) == []


def test_uniform_control_policy() -> None:
    rng = np.random.default_rng(6)
    picks = [uniform_choice(4, rng) for _ in range(4000)]
    assert {p for _, p in picks} == {0.25}
    counts = np.bincount([i for i, _ in picks], minlength=4)
    assert stats.chisquare(counts).pvalue > 1e-3


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0.05, 5000, allow_nan=False), st.floats(0.05, 50_000, allow_nan=False)),
        min_size=2,
        max_size=8,
    ),
    st.floats(0.0, 0.5),
)
def test_any_posteriors_give_a_distribution_close_to_exact(
    params: list[tuple[float, float]], floor: float
) -> None:
    arms = [Arm(str(i), a, b) for i, (a, b) in enumerate(params)]
    p = ThompsonBandit(floor, rng=np.random.default_rng(0)).propensities(arms)
    assert p.sum() == pytest.approx(1.0, abs=1e-12)
    assert (p >= floor / len(arms) - 1e-12).all()
    exact, error = thompson_probabilities(arms)
    assert error < 2e-3
    assert np.abs(exact - _dense_reference(arms, 400)).sum() < 2e-3
