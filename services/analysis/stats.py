"""Statistics for comparing arms: rate intervals, lift, Bayesian win probability, an always-valid
sequential test and the sample-ratio-mismatch check.

Every function takes plain counts (successes, trials) and is deterministic. Formulas:

- rate interval: Wilson score interval (`services.common.effects`, shared with features).
- relative lift (treatment / control - 1): delta method on the log of the rate ratio (Katz), so
  the interval is asymmetric and never crosses -100%.
- probability treatment beats control: P(p_T > p_C) under independent Beta(prior + counts)
  posteriors, by numerical integration of f_T(x) * F_C(x) on a fine grid (no sampling noise).
- sequential test: two-sample mixture SPRT (mSPRT) on the difference of rates with a normal
  mixing distribution N(0, tau^2); the always-valid p-value is min over looks of 1/Lambda and
  the matching confidence sequence is intersected over looks, so a result may be looked at after
  every batch without inflating the false-positive rate.
- SRM: Pearson chi-square of observed arm counts against the configured split; flagged at
  p < 0.001 by default.
- replicate interval: the mean of a quantity measured once per independent run (a benchmark
  cell's seeds) with its Student-t interval, so the run-to-run spread, not one run's
  sampling noise, is what the interval covers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from services.common.effects import wilson_interval, z_value

__all__ = [
    "Lift",
    "Rate",
    "SequentialResult",
    "SrmResult",
    "msprt_log_lambda",
    "normal_interval",
    "prob_beats",
    "rate",
    "relative_lift",
    "replicate_interval",
    "sequential_test",
    "srm_test",
    "wilson_interval",
]

Z95 = 1.959963984540054


def _z(confidence: float) -> float:
    return z_value(confidence)


@dataclass(frozen=True)
class Rate:
    """A rate (successes / trials) with its Wilson interval. `rate` is nan when trials == 0."""

    successes: float
    trials: int
    rate: float
    low: float
    high: float


@dataclass(frozen=True)
class Lift:
    """Relative lift of treatment over control (0.05 = +5%) with its interval."""

    estimate: float
    low: float
    high: float


@dataclass(frozen=True)
class SrmResult:
    """Pearson chi-square of observed counts vs expected shares; `flagged` when p < threshold."""

    observed: tuple[int, ...]
    expected: tuple[float, ...]
    chi2: float
    p_value: float
    threshold: float
    flagged: bool


@dataclass(frozen=True)
class SequentialResult:
    """Always-valid test of treatment rate == control rate.

    `p_value` is valid at any stopping time; `rejected` is `p_value < alpha`. `diff_low` and
    `diff_high` bound treatment rate - control rate (a confidence sequence, intersected over
    looks). `looks` counts the looks the result is based on.
    """

    p_value: float
    rejected: bool
    alpha: float
    diff: float
    diff_low: float
    diff_high: float
    looks: int


def rate(successes: float, trials: int, confidence: float = 0.95) -> Rate:
    """A `Rate` with its Wilson interval."""
    low, high = wilson_interval(successes, trials, confidence)
    r = successes / trials if trials > 0 else float("nan")
    return Rate(float(successes), int(trials), float(r), float(low), float(high))


def relative_lift(
    control: tuple[float, int], treatment: tuple[float, int], confidence: float = 0.95
) -> Lift:
    """Treatment rate / control rate - 1, interval by the delta method on log(ratio).

    Var(log ratio) ~= (1 - p_T) / s_T + (1 - p_C) / s_C. The estimate is nan when the control
    rate is 0 (no finite lift); the interval is (estimate, estimate) with nan bounds when either
    arm has no successes.
    """
    s_c, n_c = control
    s_t, n_t = treatment
    if n_c <= 0 or n_t <= 0 or s_c <= 0:
        return Lift(float("nan"), float("nan"), float("nan"))
    p_c, p_t = s_c / n_c, s_t / n_t
    est = p_t / p_c - 1
    if s_t <= 0:
        return Lift(est, float("nan"), float("nan"))
    se = np.sqrt(max((1 - p_t) / s_t + (1 - p_c) / s_c, 0.0))
    z = _z(confidence)
    log_ratio = np.log(p_t / p_c)
    return Lift(
        float(est), float(np.exp(log_ratio - z * se) - 1), float(np.exp(log_ratio + z * se) - 1)
    )


def prob_beats(
    control: tuple[float, int],
    treatment: tuple[float, int],
    prior: tuple[float, float] = (1.0, 1.0),
    grid: int = 20001,
) -> float:
    """P(treatment rate > control rate) under independent Beta posteriors.

    Posterior of each arm: Beta(prior_a + successes, prior_b + trials - successes). Computed as
    the integral of f_T(x) * F_C(x) over the range where either density has mass.
    """
    a_c, b_c = prior[0] + control[0], prior[1] + control[1] - control[0]
    a_t, b_t = prior[0] + treatment[0], prior[1] + treatment[1] - treatment[0]
    if min(a_c, b_c, a_t, b_t) <= 0:
        raise ValueError("successes must lie in [0, trials] and the prior must be positive")
    lo = min(stats.beta.ppf(1e-12, a_c, b_c), stats.beta.ppf(1e-12, a_t, b_t))
    hi = max(stats.beta.isf(1e-12, a_c, b_c), stats.beta.isf(1e-12, a_t, b_t))
    x = np.linspace(lo, hi, grid)
    integrand = stats.beta.pdf(x, a_t, b_t) * stats.beta.cdf(x, a_c, b_c)
    # Mass of the treatment posterior above `hi` is < 1e-12 and F_C(hi) ~ 1: ignore it.
    return float(np.clip(np.trapezoid(integrand, x), 0.0, 1.0))


def srm_test(
    observed: Sequence[int], expected_shares: Sequence[float], threshold: float = 0.001
) -> SrmResult:
    """Sample-ratio-mismatch check: does the observed split match the configured one?"""
    obs = np.asarray(observed, dtype=np.float64)
    shares = np.asarray(expected_shares, dtype=np.float64)
    if obs.shape != shares.shape or obs.size < 2:
        raise ValueError("need one expected share per arm and at least two arms")
    if np.any(shares <= 0):
        raise ValueError(f"expected shares must be positive, got {list(shares)}")
    shares = shares / shares.sum()
    total = obs.sum()
    expected = shares * total
    if total <= 0:
        return SrmResult(tuple(int(o) for o in obs), tuple(expected), 0.0, 1.0, threshold, False)
    chi2 = float(((obs - expected) ** 2 / expected).sum())
    p = float(stats.chi2.sf(chi2, obs.size - 1))
    return SrmResult(
        tuple(int(o) for o in obs),
        tuple(float(e) for e in expected),
        chi2,
        p,
        threshold,
        p < threshold,
    )


def msprt_log_lambda(
    s_c: np.ndarray, n_c: np.ndarray, s_t: np.ndarray, n_t: np.ndarray, relative_effect: float = 0.1
) -> np.ndarray:
    """Log mixture likelihood ratio of the two-sample mSPRT at each look; broadcasts.

    theta_hat = p_T - p_C with V = p(1-p)(1/n_C + 1/n_T) at the pooled rate p, and the mixing
    distribution theta ~ N(0, tau^2) with tau = relative_effect * p (an effect of about
    `relative_effect` relative lift is what the test is tuned to find fastest).
    log Lambda = 0.5 log(V / (V + tau^2)) + tau^2 theta_hat^2 / (2 V (V + tau^2)).
    """
    s_c, n_c, s_t, n_t = (np.asarray(a, dtype=np.float64) for a in (s_c, n_c, s_t, n_t))
    with np.errstate(invalid="ignore", divide="ignore"):
        pooled = (s_c + s_t) / (n_c + n_t)
        var_unit = pooled * (1 - pooled)
        v = var_unit * (1 / n_c + 1 / n_t)
        tau2 = (relative_effect * pooled) ** 2
        theta = s_t / n_t - s_c / n_c
        out = 0.5 * np.log(v / (v + tau2)) + tau2 * theta**2 / (2 * v * (v + tau2))
    return np.where((v > 0) & np.isfinite(out), out, 0.0)


def sequential_test(
    s_c: Sequence[float] | np.ndarray,
    n_c: Sequence[float] | np.ndarray,
    s_t: Sequence[float] | np.ndarray,
    n_t: Sequence[float] | np.ndarray,
    alpha: float = 0.05,
    relative_effect: float = 0.1,
    min_per_arm: int = 100,
) -> SequentialResult:
    """Always-valid test over looks given as cumulative counts per look (last = now).

    Looks with fewer than `min_per_arm` trials in either arm are skipped (burn-in for the
    plug-in variance). A single look is valid too: then the test is a one-shot mSPRT.
    """
    s_c, n_c, s_t, n_t = (
        np.atleast_1d(np.asarray(a, dtype=np.float64)) for a in (s_c, n_c, s_t, n_t)
    )
    use = (n_c >= min_per_arm) & (n_t >= min_per_arm)
    diff = (
        float(s_t[-1] / n_t[-1] - s_c[-1] / n_c[-1])
        if n_c[-1] > 0 and n_t[-1] > 0
        else float("nan")
    )
    if not use.any():
        return SequentialResult(1.0, False, alpha, diff, -1.0, 1.0, 0)
    s_c, n_c, s_t, n_t = s_c[use], n_c[use], s_t[use], n_t[use]
    log_lam = msprt_log_lambda(s_c, n_c, s_t, n_t, relative_effect)
    p_value = float(min(1.0, np.exp(-log_lam.max())))
    low, high = _confidence_sequence(s_c, n_c, s_t, n_t, alpha, relative_effect)
    return SequentialResult(p_value, p_value < alpha, alpha, diff, low, high, int(use.sum()))


def _confidence_sequence(
    s_c: np.ndarray,
    n_c: np.ndarray,
    s_t: np.ndarray,
    n_t: np.ndarray,
    alpha: float,
    relative_effect: float,
) -> tuple[float, float]:
    """The set of differences theta the mSPRT would not reject, intersected over looks.

    Centred at each look's difference with unpooled variance V:
    |theta_hat - theta| <= sqrt(V (V + tau^2) / tau^2 * (2 log(1/alpha) + log((V + tau^2) / V))).
    """
    p_c, p_t = s_c / n_c, s_t / n_t
    pooled = (s_c + s_t) / (n_c + n_t)
    v = p_c * (1 - p_c) / n_c + p_t * (1 - p_t) / n_t
    v = np.maximum(v, pooled * (1 - pooled) * (1 / n_c + 1 / n_t) * 1e-3 + 1e-12)
    tau2 = np.maximum((relative_effect * pooled) ** 2, 1e-12)
    radius = np.sqrt(v * (v + tau2) / tau2 * (2 * np.log(1 / alpha) + np.log((v + tau2) / v)))
    theta = p_t - p_c
    low = float(np.max(theta - radius))
    high = float(np.min(theta + radius))
    if low > high:  # the running intersection can be empty under model misfit: report last look
        low, high = float(theta[-1] - radius[-1]), float(theta[-1] + radius[-1])
    return max(low, -1.0), min(high, 1.0)


def normal_interval(mean: float, se: float, confidence: float = 0.95) -> tuple[float, float]:
    """mean -/+ z * se."""
    z = _z(confidence)
    return mean - z * se, mean + z * se


def replicate_interval(
    values: Sequence[float], confidence: float = 0.95
) -> tuple[float, float, float]:
    """(mean, low, high) of ``values``, one per independent run, with the Student-t interval
    ``mean ∓ t(n − 1) · sd / √n``. One run's own interval covers the noise inside it (which
    users saw, which clicked) given how the run went; it does not cover how the run went (a
    loop's verdicts on a few dozen impressions are luck of the draw), and the spread between
    runs does. Non-finite values are dropped; with fewer than two runs the interval is
    unbounded (nothing to estimate a spread from); nan mean for none."""
    xs = np.asarray([float(v) for v in values if np.isfinite(v)], dtype=np.float64)
    if xs.size == 0:
        return float("nan"), float("-inf"), float("inf")
    mean = float(xs.mean())
    if xs.size < 2:
        return mean, float("-inf"), float("inf")
    half = float(stats.t.ppf(0.5 + confidence / 2, xs.size - 1) * xs.std(ddof=1) / np.sqrt(xs.size))
    return mean, mean - half, mean + half
