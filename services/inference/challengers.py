"""The challenger budget: how unproven generated creatives get judged (DESIGN.md §1).

A generated creative starts as a *challenger*. Challengers do not compete in the main bandit:
they share a bounded slice of a segment's optimized traffic (`share`), uniformly, so each of
the ``k`` live challengers gets ``rate · share / k`` impressions a second whatever the model
or the early clicks say. A challenger is decided once it has `impressions_needed` impressions
(enough to know its CTR to ±``precision`` relative, at two standard errors) or once it is
`decide_within_s` old, whichever comes first:

- **promote** when its own data (no model prior) make it at least as likely as not to beat
  the best proven creative of the segment: ``P(θ_challenger > θ_best) ≥ promote_prob``; it then
  competes in the main bandit on equal terms with the human creatives (and can be retired
  there like any creative);
- **retire** otherwise.

Sizing. With a segment's optimized request rate ``r`` and CTR ``p`` (both measured), a
challenger needs ``n(p) = z² (1 − p) / (p · precision²)`` impressions, so the slice can judge
``slots = ⌊r · share · T / n(p)⌋`` challengers at once within ``T = decide_within_s``. New
challengers are admitted only into free slots; a slot frees when its challenger is decided,
so admission runs at most ``slots / T`` per second — as fast as the slice can judge. When the
traffic cannot judge even one challenger in time (``slots = 0``) nothing is admitted: the loop
serves the proven creatives only, which is the catalog bandit plus earlier winners.

Honest priors. The reward model's prediction enters as a Beta prior whose strength follows
its held-out quality (`prior_strength`): discrimination (Gini = 2·AUC − 1) times calibration
(1 − ECE / mean prediction), at most `max_prior_strength` pseudo-impressions; its mean is
capped at the best proven creative's posterior mean, so a creative never outbids a proven
one on the model's word alone.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.inference.bandit import Arm, prob_best

__all__ = [
    "CHALLENGER",
    "PROMOTE",
    "PROMOTED",
    "RETIRE",
    "ChallengerBudget",
    "RateMeter",
    "honest_prior",
    "is_challenger",
    "mix_challengers",
    "prior_strength",
]

CHALLENGER = "challenger"
PROMOTED = "promoted"
PROMOTE = "promote"
RETIRE = "retire"


def is_challenger(creative: Mapping[str, Any]) -> bool:
    """A generated creative not yet promoted (records without a stage count as challengers)."""
    return creative.get("origin") == "generated" and creative.get("stage") != PROMOTED


@dataclass(frozen=True)
class ChallengerBudget:
    """The slice of optimized traffic for challengers and the rules that decide them."""

    share: float = 0.2
    decide_within_s: float = 300.0
    precision: float = 0.5
    z: float = 2.0
    promote_prob: float = 0.5
    min_ctr: float = 0.001

    def __post_init__(self) -> None:
        if not 0.0 <= self.share < 1.0:
            raise ValueError(f"share must be in [0, 1), got {self.share}")
        if self.decide_within_s <= 0 or self.precision <= 0 or self.z <= 0:
            raise ValueError("decide_within_s, precision and z must be positive")

    def impressions_needed(self, ctr: float) -> int:
        """Impressions that pin a CTR near ``ctr`` to ±precision (relative, z standard errors)."""
        p = min(max(float(ctr), self.min_ctr), 0.5) if math.isfinite(ctr) else 0.5
        return math.ceil(self.z**2 * (1.0 - p) / (p * self.precision**2))

    def slots(self, rate_per_s: float, ctr: float) -> int:
        """How many challengers the slice can judge at once, each within `decide_within_s`."""
        if not (rate_per_s > 0 and math.isfinite(rate_per_s)):
            return 0
        budget = rate_per_s * self.share * self.decide_within_s
        return int(budget // self.impressions_needed(ctr))

    def decide(
        self,
        clicks: float,
        impressions: float,
        age_s: float,
        best_proven: Arm | None,
        ctr: float,
    ) -> str | None:
        """`PROMOTE`, `RETIRE`, or None while the challenger is still being judged."""
        if impressions < self.impressions_needed(ctr) and age_s < self.decide_within_s:
            return None
        n = max(float(impressions), 0.0)
        s = min(max(float(clicks), 0.0), n)
        own = Arm("challenger", 1.0 + s, 1.0 + n - s)
        if best_proven is None:
            return PROMOTE
        p_better = float(prob_best([own, best_proven])[0])
        return PROMOTE if p_better >= self.promote_prob else RETIRE


def mix_challengers(main: np.ndarray, n_challengers: int, share: float) -> np.ndarray:
    """Serving distribution: the main bandit's ``main`` (over proven creatives) scaled to
    ``1 − share``, then ``share / n`` for each of the ``n`` challengers (in that order).
    Without challengers the main distribution is served whole; without proven creatives the
    challengers get everything."""
    main = np.asarray(main, dtype=np.float64)
    if n_challengers <= 0:
        return main / main.sum()
    if main.size == 0:
        return np.full(n_challengers, 1.0 / n_challengers)
    main = main / main.sum()
    return np.concatenate([(1.0 - share) * main, np.full(n_challengers, share / n_challengers)])


def prior_strength(metrics: Mapping[str, Any], max_strength: float) -> float:
    """Pseudo-impressions the reward model's word is worth, from its held-out metrics.

    ``max_strength · gini · calibration`` where ``gini = 2·AUC − 1`` (0 when the model ranks no
    better than chance) and ``calibration = 1 − ECE / mean prediction`` (0 when its error is as
    large as its predictions); at least 1 (a flat Beta(p, 1 − p)-sized prior), and 1 when the
    metrics are missing.
    """
    try:
        auc = float(metrics["reward_auc"])
        ece = float(metrics["reward_ece"])
        level = float(
            metrics.get("predicted_reward_catalog") or metrics.get("predicted_reward_generated")
        )
    except (KeyError, TypeError, ValueError):
        return 1.0
    if not all(math.isfinite(x) for x in (auc, ece, level)) or level <= 0:
        return 1.0
    gini = min(max(2.0 * auc - 1.0, 0.0), 1.0)
    calibration = min(max(1.0 - ece / level, 0.0), 1.0)
    return max(1.0, max_strength * gini * calibration)


def honest_prior(predicted: float, strength: float, proven: Sequence[Arm]) -> tuple[float, float]:
    """Beta prior worth ``strength`` impressions at ``predicted``, its mean capped at the best
    proven posterior mean."""
    p = float(predicted) if math.isfinite(predicted) else 0.5
    if proven:
        p = min(p, max(a.alpha / (a.alpha + a.beta) for a in proven))
    p = min(max(p, 0.001), 0.999)
    return strength * p, strength * (1.0 - p)


class RateMeter:
    """Requests per second per key over a sliding window (buckets of one second)."""

    def __init__(self, window_s: float = 60.0) -> None:
        self._window = max(1.0, float(window_s))
        self._events: dict[Any, deque[tuple[int, int]]] = {}
        self._started: dict[Any, float] = {}

    def hit(self, key: Any, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        sec = int(now)
        q = self._events.setdefault(key, deque())
        self._started.setdefault(key, now)
        if q and q[-1][0] == sec:
            q[-1] = (sec, q[-1][1] + 1)
        else:
            q.append((sec, 1))
        while q and q[0][0] <= sec - self._window:
            q.popleft()

    def keys(self) -> list[Any]:
        return list(self._events)

    def rate(self, key: Any, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        q = self._events.get(key)
        if not q:
            return 0.0
        span = min(self._window, max(1.0, now - self._started[key]))
        return sum(c for s, c in q if s > now - self._window) / span
