"""Thompson sampling over a segment's live creatives, with honest propensities (DESIGN.md §1).

Policy. For arms with Beta posteriors, Thompson sampling serves arm i with probability
``p_ts[i] = P(θ_i is the largest)``. The served distribution mixes in a uniform exploration
floor: ``p[i] = floor / K + (1 - floor) * p_ts[i]``. `ThompsonBandit.choose` draws the index
from exactly this ``p`` and returns ``p[index]``, so the logged propensity is the true
probability of what was served — off-policy estimates (IPS, SNIPS, DR) stay unbiased whatever
the numerical error in ``p_ts``; that error only makes the policy differ slightly from ideal
Thompson sampling.

How ``p_ts`` is computed and how exact it is: see `services.inference.propensity`
(quadrature by default: L1 error ~1e-4, a few ms per 20-arm snapshot; or Monte Carlo).

Callers should refresh posteriors on a timer (say every 100–500 ms), not on every reward, so
each segment recomputes at most a few times a second; calling `propensities` from the refresh
loop warms the cache, and `choose` is then a dictionary lookup plus one uniform draw (µs).
"""

from __future__ import annotations

import bisect
import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from services.common.privacy import stable_unit
from services.inference.propensity import p_best, p_best_monte_carlo

__all__ = [
    "ARM_CATALOG",
    "ARM_CONTROL",
    "ARM_OPTIMIZED",
    "Arm",
    "Propensities",
    "Retirement",
    "ThompsonBandit",
    "backoff",
    "experiment_arm",
    "holdout_arm",
    "posterior",
    "prob_best",
    "thompson_probabilities",
    "uniform_choice",
]

ARM_OPTIMIZED = "optimized"
ARM_CONTROL = "control"
ARM_CATALOG = "catalog"


@dataclass(frozen=True, slots=True)
class Arm:
    """One creative's Beta posterior (prior included): mean ``alpha / (alpha + beta)``."""

    creative_id: str
    alpha: float
    beta: float


@dataclass(frozen=True)
class Propensities:
    """Serving probabilities of one posterior snapshot (read-only arrays, same arm order).

    ``thompson`` are the P(best) estimates, ``p`` the floor-mixed serving distribution (what
    `ThompsonBandit.choose` draws from); ``error`` estimates the L1 distance of ``thompson``
    from the exact P(best) (two standard errors summed for Monte Carlo).
    """

    p: np.ndarray
    thompson: np.ndarray
    error: float
    cdf: tuple[float, ...]


class ThompsonBandit:
    """Thompson sampling with a uniform exploration floor and cached, exact-enough propensities.

    ``method`` is ``"quadrature"`` (default; ``n_draws`` unused) or ``"monte_carlo"`` (uses
    ``n_draws`` joint draws per snapshot). Thread-safe; ``rng`` defaults to a fresh
    ``numpy.random.default_rng()``.
    """

    def __init__(
        self,
        exploration_floor: float = 0.02,
        n_draws: int = 2000,
        rng: np.random.Generator | None = None,
        *,
        method: str = "quadrature",
        cache_size: int = 4096,
    ) -> None:
        if not 0.0 <= exploration_floor <= 1.0:
            raise ValueError(f"exploration_floor must be in [0, 1], got {exploration_floor}")
        if method not in ("quadrature", "monte_carlo"):
            raise ValueError(f"method must be 'quadrature' or 'monte_carlo', got {method!r}")
        if n_draws < 1:
            raise ValueError(f"n_draws must be >= 1, got {n_draws}")
        self.exploration_floor = float(exploration_floor)
        self.n_draws = int(n_draws)
        self.method = method
        self._rng = rng if rng is not None else np.random.default_rng()
        self._cache: OrderedDict[tuple[float, ...], Propensities] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def choose(self, arms: Sequence[Arm]) -> tuple[int, float]:
        """Draw an arm index from the serving distribution; return (index, its propensity)."""
        snap = self.snapshot(arms)
        with self._lock:
            u = float(self._rng.random())
        i = min(bisect.bisect_right(snap.cdf, u), len(snap.cdf) - 1)
        return i, float(snap.p[i])

    def propensities(self, arms: Sequence[Arm]) -> np.ndarray:
        """The serving distribution over ``arms`` (sums to 1; each ≥ floor / K)."""
        return self.snapshot(arms).p

    def cached(self, arms: Sequence[Arm]) -> Propensities | None:
        """The cached `Propensities` for these posteriors, or None (never computes): lets a
        request keep serving the previous snapshot while a refresh task computes this one."""
        with self._lock:
            return self._cache.get(_key(arms)) if arms else None

    def snapshot(self, arms: Sequence[Arm]) -> Propensities:
        """Cached `Propensities` for these posteriors (computed on first use)."""
        if not arms:
            raise ValueError("no arms to choose from: the segment has no live creatives")
        key = _key(arms)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        snap = self._compute(arms)
        with self._lock:
            self._cache[key] = snap
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return snap

    def _compute(self, arms: Sequence[Arm]) -> Propensities:
        if self.method == "monte_carlo":
            with self._lock:
                ts = _monte_carlo(arms, self.n_draws, self._rng)
            error = float(2.0 * np.sqrt(ts * (1 - ts) / self.n_draws).sum())
        else:
            ts, error = thompson_probabilities(arms)
        k = len(arms)
        p = self.exploration_floor / k + (1.0 - self.exploration_floor) * ts
        p = p / p.sum()
        cdf = np.cumsum(p)
        cdf[-1] = 1.0
        p.setflags(write=False)
        ts.setflags(write=False)
        return Propensities(p, ts, error, tuple(float(c) for c in cdf))


def thompson_probabilities(arms: Sequence[Arm]) -> tuple[np.ndarray, float]:
    """(P(arm i is best) for each arm, estimated L1 error), by quadrature (`propensity`)."""
    return p_best(*_params(arms))


def _monte_carlo(arms: Sequence[Arm], n_draws: int, rng: np.random.Generator) -> np.ndarray:
    return p_best_monte_carlo(*_params(arms), n_draws, rng)


def prob_best(
    arms: Sequence[Arm], n_draws: int | None = None, *, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Posterior probability that each arm is the best (no exploration floor): by quadrature,
    or from ``n_draws`` Monte-Carlo draws when given. Used to retire losing creatives."""
    if not arms:
        return np.zeros(0)
    if n_draws is None:
        return thompson_probabilities(arms)[0]
    return _monte_carlo(arms, n_draws, rng if rng is not None else np.random.default_rng())


def posterior(
    prior_alpha: float, prior_beta: float, clicks: float, impressions: float
) -> tuple[float, float]:
    """Beta posterior ``(prior_alpha + s, prior_beta + (n − s))``.

    ``s`` is the reward sum (clicks, or a weighted reward in [0, 1] per impression) clipped to
    [0, n]; both may be decayed evidence (`services.common.decay`). Negative or non-finite
    counts count as 0.
    """
    n = _count(impressions)
    s = min(_count(clicks), n)
    return max(prior_alpha, 1e-6) + s, max(prior_beta, 1e-6) + (n - s)


def backoff(
    segment_clicks: float,
    segment_impressions: float,
    campaign_clicks: float,
    campaign_impressions: float,
    *,
    pseudo_count: float = 20.0,
    min_impressions: float = 200.0,
) -> tuple[float, float]:
    """Counts for a sparse segment, shrunk toward the campaign-level rate of the same creative.

    Returns effective ``(clicks, impressions)``: the segment's own counts plus ``m``
    pseudo-impressions at the creative's rate in the rest of the campaign (campaign-level
    counts minus the segment's, since the roll-up includes it). ``m = pseudo_count · (1 −
    n_seg / min_impressions)`` fades to 0 once the segment has ``min_impressions`` of its own,
    and never exceeds the evidence the rest of the campaign actually has.
    """
    seg_n = _count(segment_impressions)
    seg_s = min(_count(segment_clicks), seg_n)
    other_n = max(_count(campaign_impressions) - seg_n, 0.0)
    other_s = min(max(_count(campaign_clicks) - seg_s, 0.0), other_n)
    if other_n <= 0 or min_impressions <= 0:
        return seg_s, seg_n
    m = min(pseudo_count * max(0.0, 1.0 - seg_n / min_impressions), other_n)
    return seg_s + m * other_s / other_n, seg_n + m


def holdout_arm(pseudonym: str, campaign_id: str, share: float) -> str:
    """``"control"`` for a stable ``share`` of users (per campaign), else ``"optimized"``."""
    return ARM_CONTROL if stable_unit(pseudonym, salt=campaign_id) < share else ARM_OPTIMIZED


def experiment_arm(pseudonym: str, campaign_id: str, holdout: float, catalog: float) -> str:
    """The always-on experiment: a stable ``holdout`` share of users (per campaign) on
    ``"control"``, the next ``catalog`` share on ``"catalog"`` (the bandit over the human
    creatives alone), the rest on ``"optimized"`` (the full loop)."""
    u = stable_unit(pseudonym, salt=campaign_id)
    if u < holdout:
        return ARM_CONTROL
    return ARM_CATALOG if u < holdout + catalog else ARM_OPTIMIZED


def uniform_choice(k: int, rng: np.random.Generator) -> tuple[int, float]:
    """The control policy: an index uniform over ``k`` creatives, with propensity 1/k."""
    if k < 1:
        raise ValueError("no creatives to choose from")
    return int(rng.integers(k)), 1.0 / k


class Retirement:
    """Retire creatives whose P(best) stays below ``threshold`` for ``patience`` reviews.

    `review` is called periodically per (campaign, segment) with the live arms; it returns the
    creative ids to retire now, never ``protected`` ones (e.g. catalog creatives when the
    campaign forbids retiring them), never one with less evidence than ``min_evidence``
    (``alpha + beta``, prior included: the bandit has barely tried it) and never leaving fewer
    than ``min_live`` arms.
    """

    def __init__(
        self,
        threshold: float = 0.01,
        patience: int = 3,
        min_live: int = 2,
        *,
        min_evidence: float = 50.0,
    ) -> None:
        self.threshold = threshold
        self.patience = patience
        self.min_live = min_live
        self.min_evidence = min_evidence
        self._strikes: dict[tuple[str, str], int] = {}

    def review(
        self, scope: str, arms: Sequence[Arm], protected: frozenset[str] | set[str] = frozenset()
    ) -> list[str]:
        """Update strikes for ``arms`` in ``scope`` (e.g. ``"campaign/segment"``); ids to retire."""
        probs = prob_best(arms)
        due: list[tuple[float, str]] = []
        for arm, p in zip(arms, probs, strict=True):
            key = (scope, arm.creative_id)
            if p < self.threshold and arm.alpha + arm.beta >= self.min_evidence:
                self._strikes[key] = self._strikes.get(key, 0) + 1
                if self._strikes[key] >= self.patience and arm.creative_id not in protected:
                    due.append((float(p), arm.creative_id))
            else:
                self._strikes.pop(key, None)
        room = max(len(arms) - self.min_live, 0)
        retired = [cid for _, cid in sorted(due)[:room]]
        for cid in retired:
            self._strikes.pop((scope, cid), None)
        return retired


def _params(arms: Sequence[Arm]) -> tuple[np.ndarray, np.ndarray]:
    return (
        np.array([arm.alpha for arm in arms], dtype=np.float64),
        np.array([arm.beta for arm in arms], dtype=np.float64),
    )


def _key(arms: Sequence[Arm]) -> tuple[float, ...]:
    return tuple(v for arm in arms for v in (arm.alpha, arm.beta))


def _count(x: float) -> float:
    x = float(x)
    return x if math.isfinite(x) and x > 0 else 0.0
