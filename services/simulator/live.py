"""The player's live counters: what the live view, the summary and the fault suite read."""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass, field

__all__ = ["ArmStats", "LiveStats"]


@dataclass
class ArmStats:
    impressions: int = 0
    unshown: int = 0  # decisions the app did not show (scenario audience.shown_share)
    clicks: int = 0
    conversions: int = 0
    expected_reward: float = 0.0
    oracle_reward: float = 0.0

    @property
    def ctr(self) -> float:
        return self.clicks / self.impressions if self.impressions else 0.0

    @property
    def regret(self) -> float:
        return self.oracle_reward - self.expected_reward


@dataclass
class LiveStats:
    """What the live view shows; updated by the player as requests complete."""

    started: float = field(default_factory=time.monotonic)
    requests: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    skipped: int = 0
    # Answers of a paused or stopped campaign (no decision; no events sent), by status.
    held: Counter[str] = field(default_factory=Counter)
    arms: dict[str, ArmStats] = field(default_factory=dict)
    model_versions: Counter[str] = field(default_factory=Counter)
    creatives_served: Counter[str] = field(default_factory=Counter)
    generated_served: int = 0
    events_sent: int = 0  # acknowledged by Kafka
    events_unsent: int = 0  # not written: Kafka away past the send deadline, or run over
    clicks_unsent: int = 0
    # previews of several variants (audience.slate > 1): asked for, shown with fewer than two
    # slots (a Decide failed or was held, or the app left slots unshown: no vote), votes sent
    slates: int = 0
    slates_short: int = 0
    votes: int = 0
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=5000))
    # How late this process's event loop wakes up: tells a slow Decide API from a busy simulator.
    loop_lag_ms: deque[float] = field(default_factory=lambda: deque(maxlen=2000))

    @property
    def answered(self) -> int:
        """Decide requests answered with a creative so far (shown or not)."""
        return sum(a.impressions + a.unshown for a in self.arms.values())

    def arm(self, name: str) -> ArmStats:
        return self.arms.setdefault(name, ArmStats())
