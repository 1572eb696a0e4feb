"""Making one decision: experiment arm, candidate creatives, Thompson propensities, the choice.

Propensities. For each campaign × segment the serving distribution (Thompson-sampling
probabilities P(best), computed by `bandit.ThompsonBandit` by quadrature, L1 error ~1e-4 — see
`propensity.py` — with the exploration floor mixed in; sums to 1) is cached here. It is recomputed
at once, on the request path, when the set of creatives changes, and when only posteriors moved
by `run_refresh` every `policy_refresh_ms` in a worker thread, serving the previous snapshot
meanwhile (a recomputation costs milliseconds; it stays out of the request latency);
`policy_refresh_ms=0` recomputes on the request path instead. The served creative is drawn
from exactly that cached distribution, so the logged propensity is the true probability of the
behaviour policy; numerical error only makes the policy differ slightly from ideal Thompson
sampling, never the log from the policy.

Posteriors: a creative's Beta posterior in a segment is its prior (`prior_alpha/prior_beta`
of the Creative record) plus its reward sum and impressions in that segment, shrunk toward the
campaign-level roll-up (segment '*') while the segment has fewer than `backoff_impressions`
impressions (`bandit.backoff`). Evidence is what features publishes: with its decay half-life
each observation is weighted by its own age (`services.common.decay`), read forward to now.

Experiment arms (`bandit.experiment_arm`, stable per user): ``control`` — uniform over the
live catalog creatives that may serve the segment (propensity 1/K; if the campaign has none,
uniform over every live creative); ``catalog`` (the campaign's ``catalog_share``) — Thompson
sampling over the live catalog creatives alone, the baseline that measures what generation
adds; ``optimized`` — the full loop: Thompson sampling over the proven creatives (catalog and
promoted generated ones) mixed with the challenger slice (`challengers.mix_challengers`:
challengers share ``challenger_share`` of the traffic uniformly) — unless a person pinned
creatives for the segment: then they share the optimized arm uniformly (policy ``pinned``).
The arms share the posteriors (one set of statistics per creative), so they differ only in
what they may serve.
"""

from __future__ import annotations

import asyncio
import bisect
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.common.segment import ALL_SEGMENTS
from services.inference.bandit import (
    ARM_CATALOG,
    ARM_CONTROL,
    ARM_OPTIMIZED,
    Arm,
    ThompsonBandit,
    backoff,
    experiment_arm,
    posterior,
)
from services.inference.challengers import (
    RateMeter,
    earned_share,
    is_challenger,
    mix_challengers,
    slice_weights,
)
from services.inference.gate import Pins
from services.inference.state import State

__all__ = ["Choice", "NoCreatives", "Policy", "UnknownCampaign"]


class UnknownCampaign(LookupError):
    def __init__(self, campaign_id: str) -> None:
        super().__init__(
            f"unknown campaign {campaign_id!r}: no such campaign has been applied "
            "(check campaign_id, or apply it with `admuse campaign apply`)"
        )
        self.campaign_id = campaign_id


class NoCreatives(LookupError):
    def __init__(self, campaign_id: str, segment: str) -> None:
        super().__init__(
            f"campaign {campaign_id!r} has no live creative for segment {segment!r}; "
            "publish catalog creatives for it"
        )


@dataclass(frozen=True)
class Choice:
    """A decision before it is logged."""

    creative: dict[str, Any]
    propensity: float
    arm: str
    policy: str
    policy_version: str
    candidates: int


@dataclass
class _Snapshot:
    structure: int
    stats: int
    computed_at: float
    creatives: list[dict[str, Any]]
    cdf: tuple[float, ...]
    propensities: np.ndarray
    version: str


class Policy:
    """Chooses creatives. One per service; called on the event loop only."""

    def __init__(
        self,
        state: State,
        *,
        exploration_floor: float,
        n_draws: int,
        refresh_ms: int,
        backoff_impressions: int,
        challenger_share: float = 0.0,
        challenger_weigh: bool = True,
        seed: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._state = state
        self._rng = np.random.default_rng(seed)
        self._bandit = ThompsonBandit(
            exploration_floor=exploration_floor, n_draws=n_draws, rng=self._rng
        )
        self._refresh_s = refresh_ms / 1000.0
        self._backoff = backoff_impressions
        self._clock = clock  # reads decayed evidence as of now (a simulated clock in benches)
        self._challenger_share = challenger_share
        self._challenger_weigh = challenger_weigh
        self._cache: dict[tuple[str, str, str], _Snapshot] = {}
        self._stale: set[tuple[str, str, str]] = set()
        # Optimized-arm requests per second per (campaign, segment): sizes the challenger slice.
        self.traffic = RateMeter()
        self._pins = Pins(state)
        self._instance = uuid.uuid4().hex[:6]
        self._seq = 0

    def choose(self, campaign: dict[str, Any], segment: str, pseudonym: str) -> Choice:
        campaign_id = campaign["campaign_id"]
        arm = experiment_arm(
            pseudonym,
            campaign_id,
            float(campaign.get("holdout_share", 0.0)),
            float(campaign.get("catalog_share") or 0.0),
        )
        if arm == ARM_CONTROL:
            return self._control(campaign, segment)
        if arm == ARM_OPTIMIZED:
            pins = self._pins(campaign_id, segment)
            if pins:  # a person's choice holds the optimized arm (services/common/review.py)
                return self._pinned(campaign, pins)
            self.traffic.hit((campaign_id, segment), self._clock())
        snap = self._snapshot(campaign, segment, arm)
        i = min(bisect.bisect_right(snap.cdf, self._rng.random()), len(snap.creatives) - 1)
        return Choice(
            snap.creatives[i],
            float(snap.propensities[i]),
            arm,
            "thompson",
            snap.version,
            len(snap.creatives),
        )

    def now(self) -> float:
        """The policy's clock (wall time in the service; simulated time in benches)."""
        return self._clock()

    def propensities(
        self, campaign: dict[str, Any], segment: str, arm: str = ARM_OPTIMIZED
    ) -> dict[str, float]:
        """An arm's probabilities for a segment now (creative_id → p)."""
        snap = self._snapshot(campaign, segment, arm, fresh=True)
        return {
            c["creative_id"]: float(p)
            for c, p in zip(snap.creatives, snap.propensities, strict=True)
        }

    def arms(self, campaign_id: str, segment: str, creatives: list[dict[str, Any]]) -> list[Arm]:
        """Beta posteriors (prior + stats, with back-off to '*') of `creatives` in `segment`."""
        return [self._arm(campaign_id, segment, c) for c in creatives]

    def _pinned(self, campaign: dict[str, Any], pins: list[dict[str, Any]]) -> Choice:
        i = int(self._rng.integers(len(pins))) if len(pins) > 1 else 0
        version = f"pinned-r{campaign.get('revision', 0)}-k{len(pins)}"
        return Choice(pins[i], 1.0 / len(pins), ARM_OPTIMIZED, "pinned", version, len(pins))

    def _control(self, campaign: dict[str, Any], segment: str) -> Choice:
        campaign_id = campaign["campaign_id"]
        live = self._state.live_creatives(campaign_id, segment)
        pool = [c for c in live if c["origin"] == "catalog"] or live
        if not pool:
            raise NoCreatives(campaign_id, segment)
        i = int(self._rng.integers(len(pool)))
        version = f"uniform-r{campaign.get('revision', 0)}-k{len(pool)}"
        return Choice(pool[i], 1.0 / len(pool), ARM_CONTROL, "uniform", version, len(pool))

    def _pools(
        self, campaign_id: str, segment: str, arm: str
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(main-bandit creatives, challengers) an arm may serve in a segment."""
        live = self._state.live_creatives(campaign_id, segment)
        if arm == ARM_CATALOG:
            return [c for c in live if c["origin"] == "catalog"] or live, []
        challengers = [c for c in live if is_challenger(c)]
        return [c for c in live if not is_challenger(c)], challengers

    def _snapshot(
        self, campaign: dict[str, Any], segment: str, arm: str, *, fresh: bool = False
    ) -> _Snapshot:
        campaign_id = campaign["campaign_id"]
        key = (campaign_id, segment, arm)
        structure = self._state.structure_version.get(campaign_id, 0)
        stats = self._state.stats_version.get(campaign_id, 0)
        snap = self._cache.get(key)
        if snap is not None and snap.structure == structure:
            if snap.stats == stats:
                return snap
            if not fresh and self._refresh_s > 0:
                self._stale.add(key)  # `run_refresh` recomputes it off the request path
                return snap
        main, challengers = self._pools(campaign_id, segment, arm)
        if not main and not challengers:
            raise NoCreatives(campaign_id, segment)
        p = self._mix(campaign_id, segment, main, challengers)
        return self._install(key, campaign, structure, stats, main + challengers, p)

    def _mix(
        self,
        campaign_id: str,
        segment: str,
        main: list[dict[str, Any]],
        challengers: list[dict[str, Any]],
    ) -> np.ndarray:
        arms = self.arms(campaign_id, segment, main)
        p_main = self._bandit.snapshot(arms).p if main else []
        best = max(arms, key=lambda a: a.alpha / (a.alpha + a.beta), default=None)
        w = (
            slice_weights(self.arms(campaign_id, segment, challengers), best)
            if self._challenger_weigh
            else len(challengers)
        )
        return mix_challengers(np.asarray(p_main), w, self.challenger_share(campaign_id))

    def challenger_share(self, campaign_id: str) -> float:
        """The slice the campaign's challengers have earned (`challengers.earned_share`)."""
        mine = (c for c in self._state.creatives.values() if c["campaign_id"] == campaign_id)
        return earned_share(self._challenger_share, mine)

    def _install(
        self,
        key: tuple[str, str, str],
        campaign: dict[str, Any],
        structure: int,
        stats: int,
        creatives: list[dict[str, Any]],
        p: np.ndarray,
    ) -> _Snapshot:
        self._seq += 1
        cdf = np.cumsum(p)
        cdf[-1] = 1.0
        p.setflags(write=False)
        snap = _Snapshot(
            structure, stats, time.monotonic(), creatives, tuple(float(c) for c in cdf), p,
            f"ts-r{campaign.get('revision', 0)}-{self._instance}-{self._seq}",
        )  # fmt: skip
        self._cache[key] = snap
        return snap

    async def run_refresh(self) -> None:
        """Every `refresh_ms`, recompute the snapshots whose posteriors moved, in a worker
        thread, serving the previous snapshot meanwhile (new or retired creatives do not
        wait: they are applied on the next request)."""
        while True:
            await asyncio.sleep(self._refresh_s)
            stale, self._stale = self._stale, set()
            for key in sorted(stale):
                await self._refresh(key)

    async def _refresh(self, key: tuple[str, str, str]) -> None:
        campaign_id, segment, _ = key
        campaign = self._state.campaigns.get(campaign_id)
        snap = self._cache.get(key)
        structure = self._state.structure_version.get(campaign_id, 0)
        stats = self._state.stats_version.get(campaign_id, 0)
        if campaign is None or snap is None or snap.structure != structure:
            return
        creatives = snap.creatives
        main = [c for c in creatives if not (key[2] == ARM_OPTIMIZED and is_challenger(c))]
        challengers = [c for c in creatives if key[2] == ARM_OPTIMIZED and is_challenger(c)]
        p = await asyncio.to_thread(self._mix, campaign_id, segment, main, challengers)
        if self._state.structure_version.get(campaign_id, 0) == structure:
            self._install(key, campaign, structure, stats, creatives, p)

    def _arm(self, campaign_id: str, segment: str, creative: dict[str, Any]) -> Arm:
        cid = creative["creative_id"]
        a0 = float(creative.get("prior_alpha") or 1.0)
        b0 = float(creative.get("prior_beta") or 1.0)
        seg = self._state.segment_stats(campaign_id, segment, cid)
        top = (
            self._state.segment_stats(campaign_id, ALL_SEGMENTS, cid)
            if segment != ALL_SEGMENTS
            else None
        )
        now_ms = int(self._clock() * 1000)
        own = seg.evidence(now_ms) if seg else None
        s, n = (own.successes, own.total) if own else (0.0, 0.0)
        if top is not None:
            every = top.evidence(now_ms)
            s, n = backoff(s, n, every.successes, every.total, min_impressions=self._backoff)
        alpha, beta = posterior(a0, b0, s, n)
        return Arm(cid, alpha, beta)
