"""How simulated listeners and viewers react, for campaigns rewarded by their domain's
feedback events (`reward: {kind: events}`; docs/domains.md).

The scenario's ground truth still decides one latent outcome per shown decision — engaged or
not, with the truth's probability — and this module turns it into the domain's events:

- music, engaged: `play`, `listen_through` (fraction U(0.8, 1)), `like` (p 0.5), `replay`
  (p 0.3); not engaged: `play`, `skip`, `listen_through` (fraction U(0.05, 0.35));
- film, engaged: `watch_through` (U(0.8, 1)); not engaged: `drop_off` (at a beat),
  `watch_through` (U(0, 0.5)). The `vote` goes to one engaged variant of a preview: with
  `audience.slate: 1` every engaged viewer votes for the one variant shown (`vote=True`); with
  slates of k ≥ 2 variants the player asks for the vote separately and gives it to one slot
  (simulator/slates.py; docs/analysis.md "Votes between variants").

`expected` is E[reward | engaged (, voted)] under the campaign's mapping (by simulation, fixed
seed), so the oracle scores regret in the same currency the services learn from.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass

from services.domains import get_domain

__all__ = ["Feedback", "feedback_for"]

Event = tuple[str, float | None, float]  # type, value, delay after the reaction (s)
VOTE: Event = ("vote", None, 0.1)


@dataclass(frozen=True)
class Feedback:
    domain: str
    weights: tuple[tuple[str, float], ...]

    def events(self, engaged: bool, rng: random.Random, *, vote: bool = True) -> list[Event]:
        """An engaged or idle viewer's events; `vote`: an engaged film viewer votes (for the
        one variant shown; slates give their one vote separately)."""
        if self.domain == "music":
            if not engaged:
                return [("play", None, 0.0), ("skip", None, 0.1),
                        ("listen_through", rng.uniform(0.05, 0.35), 0.1)]  # fmt: skip
            out: list[Event] = [("play", None, 0.0), ("listen_through", rng.uniform(0.8, 1), 0.1)]
            if rng.random() < 0.5:
                out.append(("like", None, 0.2))
            if rng.random() < 0.3:
                out.append(("replay", None, 0.3))
            return out
        if engaged:
            watched: Event = ("watch_through", rng.uniform(0.8, 1.0), 0.0)
            return [watched, VOTE] if vote else [watched]
        return [("drop_off", float(rng.randrange(5)), 0.0),
                ("watch_through", rng.uniform(0.0, 0.5), 0.0)]  # fmt: skip

    def reward(self, events: list[Event]) -> float:
        pairs = [(kind, value) for kind, value, _ in events]
        return get_domain(self.domain).reward(pairs, dict(self.weights))

    def expected(self, engaged: bool, draws: int = 4000, *, voted: bool = True) -> float:
        """E[reward | engaged]; `voted` False: of an engaged film viewer whose vote went
        elsewhere (or who saw no slate to vote in)."""
        rng = random.Random(11)
        events = [self.events(engaged, rng, vote=voted) for _ in range(draws)]
        return sum(self.reward(e) for e in events) / draws


def feedback_for(domain: str, reward: Mapping[str, object] | None) -> Feedback | None:
    """The feedback model of a campaign rewarded by events; None for the others."""
    if domain not in ("music", "film") or reward is None:
        return None
    return Feedback(domain, tuple(sorted((str(k), float(v)) for k, v in reward.items())))  # type: ignore[arg-type]
