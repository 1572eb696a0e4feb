"""The experiment over time: cumulative CTR per arm with Wilson intervals (the report's own
interval function), and regret against the simulator's ground truth where a run has one."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from services.analysis import LoggedData, wilson_interval

__all__ = ["Point", "Series", "ctr_series", "regret_by_arm"]

POINTS = 40


@dataclass(frozen=True)
class Point:
    t_ms: int
    n: int
    rate: float
    low: float
    high: float


@dataclass(frozen=True)
class Series:
    """{arm: cumulative points}, by decision time, shown decisions with a known outcome."""

    arms: dict[str, list[Point]] = field(default_factory=dict)


def ctr_series(rewards: LoggedData, points: int = POINTS, confidence: float = 0.95) -> Series:
    if "shown" in rewards.extra:
        rewards = rewards.select(rewards.extra["shown"].astype(bool))
    if rewards.n == 0:
        return Series()
    order = np.argsort(rewards.timestamp_ms, kind="stable")
    t = rewards.timestamp_ms[order]
    arm = rewards.arm[order]
    success = (rewards.reward[order] > 0).astype(np.float64)
    cuts = np.linspace(t[0], t[-1], points + 1)[1:]
    idx = np.searchsorted(t, cuts, side="right")
    out: dict[str, list[Point]] = {}
    for code, name in enumerate(rewards.arms):
        mask = arm == code
        n = np.concatenate([[0], np.cumsum(mask)])[idx]
        s = np.concatenate([[0], np.cumsum(success * mask)])[idx]
        low, high = wilson_interval(s, n, confidence)
        out[name] = [
            Point(int(cuts[i]), int(n[i]), float(s[i] / n[i]), float(low[i]), float(high[i]))
            for i in range(len(cuts))
            if n[i] > 0
        ]
    return Series(out)


def regret_by_arm(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Per arm: requests, expected CTR and regret per impression against the oracle (the
    simulator's hidden best creative per request), over the shown requests."""
    acc: dict[str, list[float]] = {}
    for r in rows:
        if not r.get("shown", True):
            continue
        a = acc.setdefault(str(r["arm"]), [0.0, 0.0, 0.0])
        a[0] += 1
        a[1] += float(r["expected_reward"])
        a[2] += float(r["oracle_reward"]) - float(r["expected_reward"])
    return {
        arm: {"n": n, "expected_ctr": e / n, "regret_per_impression": g / n}
        for arm, (n, e, g) in sorted(acc.items())
        if n
    }
