"""Previews that show several variants at once (`audience.slate: k`, film): who gets the vote.

One arrival is one viewer, who sees the k slots of one preview; each slot is its own Decide
(its own decision and propensity; docs/analysis.md "Votes between variants"). The hidden
viewer model:

- each shown slot i engages on its own, with the truth's probability p_i (engaged_i ~
  Bernoulli(p_i)), and sends its watch_through / drop_off events as a single variant would;
- when at least two slots were shown and at least one engaged, the viewer votes for one
  engaged slot, chosen with probability proportional to p_i among the engaged ones (a
  Luce choice: a variant the viewer liked more is more likely to win the vote); no vote
  otherwise — in particular a slate with fewer than two shown slots (a Decide failed, or
  the app left a slot unshown) gets none.

The truth numbers of a slot are conditional on the slate actually shown: `vote_chance(p_i,
opponents)` is P(slot i wins the vote | it engaged), exact over the opponents' engagement
(2^(k-1) cases, k ≤ 4); the slot's expected reward is E[reward] under that chance
(GroundTruth.slate_reward), and its oracle is the same with the best creative of the space in
the slot against the same opponents — the best creative there, as long as engaging and
winning the vote never lower the reward (the single-slot oracle's assumption too).
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence

__all__ = ["choose_vote", "vote_chance"]


def vote_chance(p: float, opponents: Sequence[float]) -> float:
    """P(a slot with engagement probability `p` wins the vote | it engaged), shown beside
    slots with engagement probabilities `opponents`; 0 without opponents (no vote)."""
    if not opponents:
        return 0.0
    if p <= 0:
        return 0.0
    chance = 0.0
    for engaged in itertools.product((False, True), repeat=len(opponents)):
        weight = math.prod(q if e else 1 - q for q, e in zip(opponents, engaged, strict=True))
        rivals = sum(q for q, e in zip(opponents, engaged, strict=True) if e)
        chance += weight * (p / (p + rivals))
    return chance


def choose_vote(ps: Sequence[float], engaged: Sequence[bool], rng: random.Random) -> int | None:
    """The index of the shown slot that gets the vote, or None: fewer than two slots shown,
    or none engaged. Draws one number from `rng` only when there is a vote to give."""
    if len(ps) != len(engaged):
        raise ValueError(f"{len(ps)} probabilities for {len(engaged)} slots")
    candidates = [i for i, e in enumerate(engaged) if e]
    if len(ps) < 2 or not candidates:
        return None
    weights = [ps[i] for i in candidates]
    if sum(weights) <= 0:  # engaged with probability 0 cannot happen; stay defined anyway
        return rng.choice(candidates)
    return rng.choices(candidates, weights=weights)[0]
