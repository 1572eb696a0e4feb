"""Automatic rollback: a newly swapped model whose admitted creatives do significantly worse
than the creatives that served before it, over the same traffic, is rolled back.

After a swap (when a previous model exists) the campaign is watched: the *new* arm is the
generated creatives of the new version, the *baseline* the creatives that were live at the
swap, counted from their impressions and rewards since the swap (campaign roll-up stats,
segment ``*``, from admuse.stats). Both are served at the same time by the same bandit, so
they see the same traffic.

The test is sequential and always valid (a one-sided normal-mixture boundary, Robbins 1970 /
Howard et al. 2021): with D = p̂_new − p̂_base, v = p̄(1 − p̄)(1/n_new + 1/n_base) (p̄ pooled),
S = D / v and information V = 1/v, the model is rolled back the first time

    −S ≥ sqrt((V + ρ) · (2·log(1/α) + log((V + ρ) / ρ)))

which under "no worse" happens with probability at most ≈ α however long it is watched (the
plug-in variance makes it asymptotic). It neither waits forever — the watch ends, accepting
the model, once the new creatives have `horizon_impressions` impressions — nor fires on noise.
Rewards are treated as Bernoulli (weighted rewards are clipped into [0, 1] rates).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from services.common.logging import get_logger
from services.common.segment import ALL_SEGMENTS
from services.inference.metrics import Metrics
from services.inference.state import State

__all__ = ["RollbackWatch", "SequentialTest", "Watch"]

_log = get_logger(__name__)


@dataclass(frozen=True)
class SequentialTest:
    alpha: float = 0.05
    rho: float = 10_000.0  # mixture scale, in units of information (1 / variance)
    min_impressions: int = 100  # per side, before the first look
    horizon_impressions: int = 20_000  # new-arm impressions after which the model is kept

    def boundary(self, info: float) -> float:
        v = info + self.rho
        return math.sqrt(v * (2 * math.log(1 / self.alpha) + math.log(v / self.rho)))

    def statistic(self, n_new: float, r_new: float, n_base: float, r_base: float) -> float:
        """−S / boundary(V): ≥ 1 means significantly worse (0 when nothing to say yet)."""
        if n_new <= 0 or n_base <= 0:
            return 0.0
        p_new = min(max(r_new / n_new, 0.0), 1.0)
        p_base = min(max(r_base / n_base, 0.0), 1.0)
        pooled = min(max((p_new * n_new + p_base * n_base) / (n_new + n_base), 1e-4), 1 - 1e-4)
        var = pooled * (1 - pooled) * (1 / n_new + 1 / n_base)
        return -((p_new - p_base) / var) / self.boundary(1 / var)

    def verdict(self, n_new: float, r_new: float, n_base: float, r_base: float) -> str:
        """'worse' (roll back), 'keep' (horizon reached) or 'wait'."""
        if min(n_new, n_base) >= self.min_impressions:
            if self.statistic(n_new, r_new, n_base, r_base) >= 1.0:
                return "worse"
        return "keep" if n_new >= self.horizon_impressions else "wait"


@dataclass
class Watch:
    campaign_id: str
    version: str
    previous: str
    started: float
    baseline: dict[str, tuple[int, float]] = field(default_factory=dict)  # at the swap


Revert = Callable[[str, str], Awaitable[str | None]]  # (campaign, bad version) -> restored


class RollbackWatch:
    """Watches each campaign's newest model against the creatives it joined."""

    def __init__(
        self, test: SequentialTest, state: State, metrics: Metrics, revert: Revert, check_s: float
    ) -> None:
        self.test = test
        self._state = state
        self._metrics = metrics
        self._revert = revert
        self._check_s = check_s
        self.watches: dict[str, Watch] = {}

    def on_swap(self, campaign_id: str, version: str, previous: str | None) -> None:
        """A model was swapped in: watch it against what serves now (if anything did)."""
        self.watches.pop(campaign_id, None)
        if previous is None:
            return
        live = self._state.live_creatives(campaign_id)
        baseline = {
            c["creative_id"]: self._counts(campaign_id, c["creative_id"])
            for c in live
            if c.get("model_version") != version
        }
        if baseline:
            self.watches[campaign_id] = Watch(
                campaign_id, version, previous, time.monotonic(), baseline
            )

    def arms(self, watch: Watch) -> tuple[int, float, int, float]:
        """(n_new, r_new, n_base, r_base) since the swap."""
        n_new = r_new = n_base = r_base = 0.0
        for c in self._state.creatives.values():
            if c["campaign_id"] == watch.campaign_id and c.get("model_version") == watch.version:
                n, r = self._counts(watch.campaign_id, c["creative_id"])
                n_new, r_new = n_new + n, r_new + r
        for cid, (n0, r0) in watch.baseline.items():
            n, r = self._counts(watch.campaign_id, cid)
            n_base, r_base = n_base + max(0, n - n0), r_base + max(0.0, r - r0)
        return int(n_new), r_new, int(n_base), r_base

    async def check(self) -> list[str]:
        """One look at every watched campaign; returns the campaigns rolled back."""
        rolled = []
        for campaign_id, watch in list(self.watches.items()):
            n_new, r_new, n_base, r_base = self.arms(watch)
            for arm, n, r in (("new", n_new, r_new), ("baseline", n_base, r_base)):
                self._metrics.watch_impressions.labels(campaign_id, arm).set(n)
                self._metrics.watch_reward_rate.labels(campaign_id, arm).set(r / n if n else 0.0)
            verdict = self.test.verdict(n_new, r_new, n_base, r_base)
            if verdict == "wait":
                continue
            del self.watches[campaign_id]
            info: dict[str, Any] = {
                "campaign_id": campaign_id,
                "version": watch.version,
                "previous": watch.previous,
                "new_impressions": n_new,
                "new_rate": round(r_new / n_new, 5) if n_new else None,
                "baseline_impressions": n_base,
                "baseline_rate": round(r_base / n_base, 5) if n_base else None,
                "watched_s": round(time.monotonic() - watch.started, 1),
            }
            if verdict == "keep":
                _log.info("model_kept_after_its_watch", **info)
                continue
            restored = await self._revert(campaign_id, watch.version)
            if restored is None:
                continue
            self._metrics.rollbacks.labels(campaign_id).inc()
            _log.warning("model_rolled_back", restored=restored, **info)
            rolled.append(campaign_id)
        return rolled

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._check_s)
            try:
                await self.check()
            except Exception as exc:  # a failed look must not end the watch
                _log.error("rollback_check_failed", error=repr(exc))

    def _counts(self, campaign_id: str, creative_id: str) -> tuple[int, float]:
        stats = self._state.segment_stats(campaign_id, ALL_SEGMENTS, creative_id)
        return (stats.impressions, stats.reward_sum) if stats else (0, 0.0)
