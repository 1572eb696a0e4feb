"""Votes between variants shown together → per-decision rewards and an off-policy estimate.

The estimator is written down in docs/analysis.md ("Votes between variants"). In short: each
shown slot is its own decision with its own propensity (the app asks Decide once per slot,
independently); one vote is one unit of reward, for the slot the viewer chose (the app sends
`vote` with that slot's decision_id; the other slots close with reward 0); the value of a
policy is its expected share of votes against opponents drawn from the logging policy,
estimated by IPS (and self-normalized IPS) over slots.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

__all__ = ["Slot", "VoteEstimate", "vote_rewards", "vote_value"]


@dataclass(frozen=True)
class Slot:
    decision_id: str
    creative_id: str
    propensity: float  # P(logging policy shows this creative in this slot | context)
    context: str = ""  # the segment the decision was made for


@dataclass(frozen=True)
class VoteEstimate:
    ips: float
    snips: float
    stderr: float  # of the IPS estimate
    slots: int

    def interval(self, z: float = 1.96) -> tuple[float, float]:
        return self.ips - z * self.stderr, self.ips + z * self.stderr


def vote_rewards(slots: Sequence[Slot], chosen: str | None) -> dict[str, float]:
    """Reward per decision of one vote: 1 for the chosen slot's decision, 0 for the others;
    every slot 0 when nobody voted (`chosen` None). ValueError for fewer than two slots, a
    repeated decision, or a choice that was not shown."""
    if len(slots) < 2:
        raise ValueError(f"a vote needs at least two shown variants, got {len(slots)}")
    ids = [s.decision_id for s in slots]
    if len(set(ids)) != len(ids):
        raise ValueError(f"a vote shows each decision once; repeated: {ids}")
    if chosen is not None and chosen not in ids:
        raise ValueError(f"the vote is for decision {chosen!r}, which was not shown: {ids}")
    return {d: float(d == chosen) for d in ids}


def vote_value(
    votes: Iterable[tuple[Sequence[Slot], str | None]],  # (slots, chosen decision_id)
    target: Callable[[str, str], float],
) -> VoteEstimate:
    """Expected vote share of the `target` policy (`target(context, creative_id)` = the
    probability it shows that creative in a slot) against logging-policy opponents:
    IPS = mean over slots of target/propensity × reward, SNIPS its self-normalized form."""
    terms, weights = [], []
    for slots, chosen in votes:
        rewards = vote_rewards(slots, chosen)
        for s in slots:
            if not 0 < s.propensity <= 1:
                raise ValueError(f"slot {s.decision_id}: propensity {s.propensity} not in (0, 1]")
            w = target(s.context, s.creative_id) / s.propensity
            weights.append(w)
            terms.append(w * rewards[s.decision_id])
    n = len(terms)
    if n == 0:
        raise ValueError("no votes to estimate from")
    ips = sum(terms) / n
    var = sum((t - ips) ** 2 for t in terms) / max(1, n - 1)
    total_w = sum(weights)
    snips = sum(terms) / total_w if total_w > 0 else 0.0
    return VoteEstimate(ips, snips, math.sqrt(var / n), n)
