"""Rates, Wilson intervals and lift over the segment average: the one definition behind every
effect a user sees (features' live `/effects` page, `admuse report`), stated in
docs/analysis.md ("Attribute and creative effects").

- rate interval: Wilson score interval at `confidence` (exact 0 / 1 at the edges, nan with no
  trials);
- lift of a group (a creative, an attribute value) = rate / expected − 1, where *expected* is
  the segment average the group was measured against: the mean reward of the segments it was
  shown in, weighted by how often it was shown in each (for one segment: that segment's mean
  over all its creatives); the interval is the rate's interval divided by *expected* (the
  segment averages pool every creative's rows, so their own noise is small next to the
  group's). nan where *expected* is not positive.

Pure numpy and the standard library; scalars and arrays alike.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np

__all__ = ["lift_over", "wilson_interval", "z_value"]


def z_value(confidence: float) -> float:
    """The two-sided standard-normal quantile of `confidence` (0.95 → 1.96)."""
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson_interval(
    successes: np.ndarray | float, trials: np.ndarray | float, confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for a binomial rate; vectorized. nan where trials == 0."""
    s = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    z = z_value(confidence)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = s / n
        denom = 1 + z * z / n
        centre = (p + z * z / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
        low = np.clip(centre - half, 0.0, 1.0)
        high = np.clip(centre + half, 0.0, 1.0)
    low = np.where(n > 0, np.where(s <= 0, 0.0, low), np.nan)  # exact at the edges
    high = np.where(n > 0, np.where(s >= n, 1.0, high), np.nan)
    return low, high


def lift_over(
    rate: np.ndarray | float,
    low: np.ndarray | float,
    high: np.ndarray | float,
    expected: np.ndarray | float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lift, lift_low, lift_high) of a rate and its interval over the segment average
    `expected`; nan where `expected` <= 0."""
    e = np.asarray(expected, dtype=np.float64)
    ok = e > 0
    safe = np.where(ok, e, 1.0)
    out = tuple(
        np.where(ok, np.asarray(v, dtype=np.float64) / safe - 1, np.nan) for v in (rate, low, high)
    )
    return out  # type: ignore[return-value]
