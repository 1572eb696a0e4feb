"""Evidence that fades per observation: the one definition of decay for every service.

Each observation (a reward in [0, 1] counted as ``r`` successes and ``1 - r`` failures) carries
its event time ``t`` (when the creative was shown). Read at time ``T`` its weight is
``2 ** (-(T - t) / half_life)``, so a creative with steady traffic still forgets what it did
long ago, and a creative that wears out is re-learned within a few half-lives. The sums are
kept as of the newest observation time (``at_ms``): an older observation arriving late is
discounted on the way in, a newer one first decays the sum forward, so the result does not
depend on arrival order, and partial sums (one per partition) merge exactly. Without a
half-life the weights are all 1 and the sums are plain counts.

Features folds rewards in with `Evidence.add` and publishes the sums with their time;
inference reads them forward to the moment of the decision with `Evidence.at`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Evidence", "weight"]


def weight(age_ms: float, half_life_s: float | None) -> float:
    """The weight of an observation `age_ms` old (1 without a half-life; never above 1)."""
    if not half_life_s or age_ms <= 0:
        return 1.0
    return 2.0 ** (-age_ms / 1000.0 / half_life_s)


@dataclass(frozen=True, slots=True)
class Evidence:
    """Decayed Beta evidence: ``successes`` and ``failures`` as of ``at_ms``."""

    successes: float = 0.0
    failures: float = 0.0
    at_ms: int | None = None

    def at(self, to_ms: int, half_life_s: float | None) -> Evidence:
        """This evidence read at `to_ms` (decayed forward; an earlier time changes nothing)."""
        if self.at_ms is None or to_ms <= self.at_ms:
            return self
        k = weight(to_ms - self.at_ms, half_life_s)
        return Evidence(self.successes * k, self.failures * k, to_ms)

    def add(self, reward: float, at_ms: int, half_life_s: float | None) -> Evidence:
        """With one more observation of `reward` (clipped to [0, 1]) made at `at_ms`."""
        r = min(max(float(reward), 0.0), 1.0)
        return self.plus(Evidence(r, 1.0 - r, at_ms), half_life_s)

    def plus(self, other: Evidence, half_life_s: float | None) -> Evidence:
        """The sum of two evidences, as of the newer one's time."""
        if other.at_ms is None:
            return self
        if self.at_ms is None:
            return other
        to = max(self.at_ms, other.at_ms)
        a, b = self.at(to, half_life_s), other.at(to, half_life_s)
        return Evidence(a.successes + b.successes, a.failures + b.failures, to)

    @property
    def total(self) -> float:
        return self.successes + self.failures

    @classmethod
    def sum(cls, parts: Iterable[Evidence], half_life_s: float | None) -> Evidence:
        out = cls()
        for p in parts:
            out = out.plus(p, half_life_s)
        return out
