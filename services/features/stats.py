"""Per campaign × segment × creative counters and their Beta posterior.

Each Reward counts once: one impression (the decision was shown and its join finished), a
click and/or conversion when attributed, its reward in ``reward_sum``, and Beta evidence with
success ``clip(reward, 0, 1)``. A Reward whose decision was never shown (campaign
``impressions: event``) counts only in ``unshown``. With a decay half-life the evidence fades
per observation, each weighted by the age of its decision (`services.common.decay`), so a
creative whose appeal changes is re-learned; the plain counters never decay.

Counters are kept as *partials*, one per source partition of the join, and published whole
(never as deltas): the aggregator replaces a partition's partial by a newer one (higher ``n``)
and sums them, so receiving the same partial twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from services.common.decay import Evidence
from services.common.segment import ALL_SEGMENTS

__all__ = [
    "Counters",
    "Partial",
    "StatsKey",
    "fold_partial",
    "merge",
    "stats_groups",
    "stats_keys",
    "stats_record",
    "totals",
    "window_start",
]


@dataclass(frozen=True)
class Counters:
    impressions: int = 0
    clicks: int = 0
    conversions: int = 0
    reward_sum: float = 0.0
    successes: float = 0.0  # Beta evidence for reward, decayed to at_ms
    failures: float = 0.0  # Beta evidence against, decayed to at_ms
    at_ms: int | None = None  # time the evidence refers to (the newest decision counted)
    n: int = 0  # updates applied: the version of a partial
    unshown: int = 0  # decisions the app never showed (no impression event): not impressions

    @property
    def evidence(self) -> Evidence:
        return Evidence(self.successes, self.failures, self.at_ms)

    def add(self, reward: Mapping[str, Any], at_ms: int, half_life_s: float | None) -> Counters:
        """These counters with one more Reward (as in the Reward record) whose decision was
        made at `at_ms`. A Reward whose decision was never shown counts only in `unshown`."""
        if not reward.get("shown", True):
            return replace(self, unshown=self.unshown + 1, n=self.n + 1)
        ev = self.evidence.add(float(reward["reward"]), at_ms, half_life_s)
        return Counters(
            impressions=self.impressions + 1,
            clicks=self.clicks + bool(reward["clicked"]),
            conversions=self.conversions + bool(reward["converted"]),
            reward_sum=self.reward_sum + float(reward["reward"]),
            successes=ev.successes,
            failures=ev.failures,
            at_ms=ev.at_ms,
            n=self.n + 1,
            unshown=self.unshown,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "impressions": self.impressions,
            "clicks": self.clicks,
            "conversions": self.conversions,
            "reward_sum": self.reward_sum,
            "successes": self.successes,
            "failures": self.failures,
            "at_ms": self.at_ms,
            "n": self.n,
            "unshown": self.unshown,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Counters:
        return cls(**data) if data else cls()


def merge(parts: Iterable[Counters], half_life_s: float | None) -> Counters:
    """Sum partials; Beta evidence is summed as of the newest partial's time."""
    parts = [p for p in parts if p.n]
    if not parts:
        return Counters()
    ev = Evidence.sum((p.evidence for p in parts), half_life_s)
    return Counters(
        impressions=sum(p.impressions for p in parts),
        clicks=sum(p.clicks for p in parts),
        conversions=sum(p.conversions for p in parts),
        reward_sum=sum(p.reward_sum for p in parts),
        successes=ev.successes,
        failures=ev.failures,
        at_ms=ev.at_ms,
        n=sum(p.n for p in parts),
        unshown=sum(p.unshown for p in parts),
    )


def window_start(ts_ms: int, window_ms: int) -> int:
    """Start of the tumbling window of length `window_ms` (epoch-aligned) holding `ts_ms`."""
    return ts_ms - ts_ms % window_ms


@dataclass(frozen=True)
class StatsKey:
    campaign_id: str
    segment: str
    creative_id: str
    window_start: int | None = None

    @property
    def key(self) -> str:
        """The admuse.stats record key (docs/contracts.md)."""
        base = f"{self.campaign_id}/{self.segment}/{self.creative_id}"
        return base if self.window_start is None else f"{base}@{self.window_start}"

    def windowed(self, start: int | None) -> StatsKey:
        return replace(self, window_start=start)

    def to_json(self) -> dict[str, Any]:
        return {
            "campaign_id": self.campaign_id,
            "segment": self.segment,
            "creative_id": self.creative_id,
            "window_start": self.window_start,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StatsKey:
        return cls(**data)


def stats_groups(reward: Mapping[str, Any]) -> list[StatsKey]:
    """The (cumulative) stats a Reward counts in: its segment and the campaign roll-up '*'."""
    segments = [reward["segment"]]
    if reward["segment"] != ALL_SEGMENTS:
        segments.append(ALL_SEGMENTS)
    return [StatsKey(reward["campaign_id"], seg, reward["creative_id"]) for seg in segments]


def stats_keys(reward: Mapping[str, Any], window_ms: int) -> list[StatsKey]:
    """Every stats record a Reward changes: its groups, cumulative and in the tumbling window
    of its decision time."""
    start = window_start(int(reward["decided_at"]), window_ms)
    return [k.windowed(ws) for k in stats_groups(reward) for ws in (None, start)]


@dataclass(frozen=True)
class Partial:
    """One join partition's counters for one group: cumulative and recent tumbling windows.

    ``n`` counts the Rewards added: a newer partial of the same partition has a higher ``n``.
    ``floor`` is the newest window dropped from ``windows`` (its totals are final).
    """

    cumulative: Counters = Counters()
    windows: Mapping[int, Counters] = field(default_factory=dict)
    n: int = 0
    floor: int | None = None

    def add(
        self,
        reward: Mapping[str, Any],
        at_ms: int,
        *,
        half_life_s: float | None,
        window_ms: int,
        keep_windows: int = 4,
    ) -> Partial:
        """Count a Reward; windows never decay; only the `keep_windows` newest are kept (older
        ones are final and stay published)."""
        start = window_start(int(reward["decided_at"]), window_ms)
        windows = dict(self.windows)
        windows[start] = windows.get(start, Counters()).add(reward, at_ms, None)
        floor = self.floor
        for old in sorted(windows)[:-keep_windows]:
            del windows[old]
            floor = max(old, floor if floor is not None else old)
        cumulative = self.cumulative.add(reward, at_ms, half_life_s)
        return Partial(cumulative, windows, self.n + 1, floor)

    def to_json(self) -> dict[str, Any]:
        return {
            "cum": self.cumulative.to_json(),
            "win": {str(k): c.to_json() for k, c in self.windows.items()},
            "n": self.n,
            "floor": self.floor,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Partial:
        if not data:
            return cls()
        windows = {int(k): Counters.from_json(c) for k, c in data["win"].items()}
        return cls(Counters.from_json(data["cum"]), windows, int(data["n"]), data.get("floor"))


def fold_partial(
    entry: Mapping[str, Any] | None, group: StatsKey, partition: int, partial: Partial
) -> dict[str, Any] | None:
    """The aggregator entry with this partition's partial replaced, or None if not newer."""
    parts = dict(entry["parts"]) if entry else {}
    current = parts.get(str(partition))
    if current is not None and current["n"] >= partial.n:
        return None
    parts[str(partition)] = partial.to_json()
    return {"key": group.to_json(), "parts": parts}


def totals(entry: Mapping[str, Any], half_life_s: float | None) -> list[tuple[StatsKey, Counters]]:
    """The stats of an aggregator entry: cumulative, then each window no partition has
    dropped yet (older windows were published while complete and are final)."""
    group = StatsKey.from_json(entry["key"])
    parts = [Partial.from_json(p) for p in entry["parts"].values()]
    out = [(group, merge((p.cumulative for p in parts), half_life_s))]
    floor = max((p.floor for p in parts if p.floor is not None), default=None)
    for start in sorted({w for p in parts for w in p.windows}):
        if floor is not None and start <= floor:
            continue
        counters = merge((p.windows[start] for p in parts if start in p.windows), None)
        out.append((group.windowed(start), counters))
    return out


def stats_record(
    key: StatsKey,
    counters: Counters,
    *,
    prior_alpha: float,
    prior_beta: float,
    half_life_s: float | None,
    window_ms: int,
    now_ms: int,
) -> dict[str, Any]:
    """A CreativeStats record: alpha/beta = prior + evidence (successes/failures, decayed
    per observation) as of ``updated_at``, the newest decision counted."""
    windowed = key.window_start is not None
    return {
        "campaign_id": key.campaign_id,
        "segment": key.segment,
        "creative_id": key.creative_id,
        "window_start": key.window_start,
        "window_ms": window_ms if windowed else None,
        "impressions": counters.impressions,
        "clicks": counters.clicks,
        "conversions": counters.conversions,
        "reward_sum": counters.reward_sum,
        "alpha": prior_alpha + counters.successes,
        "beta": prior_beta + counters.failures,
        "successes": counters.successes,
        "failures": counters.failures,
        "unshown": counters.unshown,
        "decay_half_life_s": half_life_s,
        "updated_at": counters.at_ms if counters.at_ms is not None else now_ms,
    }
