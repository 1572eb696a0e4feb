"""Votes between variants → rewards, and the off-policy vote-share estimate."""

from __future__ import annotations

import numpy as np
import pytest

from services.domains.film.votes import Slot, vote_rewards, vote_value


def test_one_vote_is_one_unit_of_reward() -> None:
    slots = [Slot("d1", "a", 0.5), Slot("d2", "b", 0.3), Slot("d3", "a", 0.5)]
    assert vote_rewards(slots, "d3") == {"d1": 0.0, "d2": 0.0, "d3": 1.0}
    assert vote_rewards(slots, "d2") == {"d1": 0.0, "d2": 1.0, "d3": 0.0}
    assert sum(vote_rewards(slots, None).values()) == 0.0  # nobody voted
    with pytest.raises(ValueError, match="not shown"):
        vote_rewards(slots, "d9")
    with pytest.raises(ValueError, match="at least two"):
        vote_rewards(slots[:1], "d1")
    with pytest.raises(ValueError, match="repeated"):
        vote_rewards([slots[0], slots[0]], "d1")


def test_bad_propensities_are_refused() -> None:
    with pytest.raises(ValueError, match="propensity 0"):
        vote_value([([Slot("d1", "a", 0.0), Slot("d2", "b", 0.5)], "d1")], lambda x, a: 1.0)


def test_ips_covers_the_true_vote_share_of_a_target_policy() -> None:
    """Bradley–Terry truth over four variants, uniform logging in pairs; the target always
    shows 'c'. Its true share against uniform opponents is known in closed form."""
    strength = {"a": 1.0, "b": 2.0, "c": 4.0, "d": 0.5}
    names = list(strength)
    mu = 1 / len(names)
    truth = np.mean([strength["c"] / (strength["c"] + strength[o]) for o in names])
    covered, rng = 0, np.random.default_rng(5)
    for _ in range(30):
        votes = []
        for v in range(1000):
            pair = rng.choice(names, size=2)
            s1, s2 = strength[pair[0]], strength[pair[1]]
            first = rng.uniform() < s1 / (s1 + s2)  # a tie (c, c) picks either slot
            slots = [Slot(f"{v}-0", pair[0], mu), Slot(f"{v}-1", pair[1], mu)]
            votes.append((slots, f"{v}-0" if first else f"{v}-1"))
        est = vote_value(votes, lambda x, a: 1.0 if a == "c" else 0.0)
        lo, hi = est.interval()
        covered += lo <= truth <= hi
        assert est.snips == pytest.approx(truth, abs=0.07)
    assert covered >= 26  # ~95 % nominal; slots of one vote are dependent (docs/analysis.md)
