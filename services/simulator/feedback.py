"""How simulated listeners and viewers react, for campaigns rewarded by their domain's
feedback events (`reward: {kind: events}`; docs/domains.md).

The scenario's ground truth still decides one latent outcome per shown decision — engaged or
not, with the truth's probability — and this module turns it into the domain's events:

- music, engaged: `play`, `listen_through` (fraction U(0.8, 1)), `like` (p 0.5), `replay`
  (p 0.3); not engaged: `play`, `skip`, `listen_through` (fraction U(0.05, 0.35));
- film, engaged: `watch_through` (U(0.8, 1)), `vote`; not engaged: `drop_off` (at a beat),
  `watch_through` (U(0, 0.5)). A single-slot stand-in: real previews show variants in pairs
  (one Decide per slot, `vote` for the chosen one; docs/analysis.md) — not simulated yet.

`expected` is E[reward | engaged] under the campaign's mapping (by simulation, fixed seed), so
the oracle scores regret in the same currency the services learn from.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass

from services.domains import get_domain

__all__ = ["Feedback", "feedback_for"]

Event = tuple[str, float | None, float]  # type, value, delay after the reaction (s)


@dataclass(frozen=True)
class Feedback:
    domain: str
    weights: tuple[tuple[str, float], ...]

    def events(self, engaged: bool, rng: random.Random) -> list[Event]:
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
            return [("watch_through", rng.uniform(0.8, 1.0), 0.0), ("vote", None, 0.1)]
        return [("drop_off", float(rng.randrange(5)), 0.0),
                ("watch_through", rng.uniform(0.0, 0.5), 0.0)]  # fmt: skip

    def reward(self, events: list[Event]) -> float:
        pairs = [(kind, value) for kind, value, _ in events]
        return get_domain(self.domain).reward(pairs, dict(self.weights))

    def expected(self, engaged: bool, draws: int = 4000) -> float:
        rng = random.Random(11)
        return sum(self.reward(self.events(engaged, rng)) for _ in range(draws)) / draws


def feedback_for(domain: str, reward: Mapping[str, object] | None) -> Feedback | None:
    """The feedback model of a campaign rewarded by events; None for the others."""
    if domain not in ("music", "film") or reward is None:
        return None
    return Feedback(domain, tuple(sorted((str(k), float(v)) for k, v in reward.items())))  # type: ignore[arg-type]
