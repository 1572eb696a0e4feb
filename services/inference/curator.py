"""Models and the creative pool: hot swap on ModelPublished, new candidates, retirement.

Swap: the artifacts are fetched from the model store — confined to it, signature and sha256
verified, quality verdict checked (`artifacts.fetch_verified`) — `ModelBundle.load`
checks signatures and warms the sessions up — all in a worker thread, so requests keep being
served by the old model — and only then the campaign's entry in `models` is replaced by one
assignment. A model that fails any check is logged, counted (`models_refused`) and dropped;
the old one keeps serving. Loads of one campaign run one at a time, and a load that is
overtaken by a newer publication is skipped.

After a swap (with `curate` on), and at each review while a challenger slot is free,
candidates are generated per segment of the model and drawn around its proven creatives
(`neighbours`), passed through the admission gate and scored (`candidates.propose`, ranked
by the model's word discounted by distance from the proven creatives; each slot goes to the
local or the generator's search by their record, `searches`); the best of those the
model predicts above its own prediction for the incumbent (the proven creative with the best
posterior mean), less `incumbent_margin`, are published to
admuse.creatives as `generated` creatives at stage `challenger`, with the model version and
an honest prior (`challengers.honest_prior`: its strength follows the model's held-out AUC
and calibration, its mean is capped at the best proven creative's). How many: only into free
slots of the challenger budget (`challengers.ChallengerBudget.slots`, sized from the
segment's measured optimized traffic and its incumbent's CTR so each challenger is decided within
`challenger_decide_s`), and at most the campaign's `max_generated` per segment. Candidates
near a live or retired creative of the segment are not proposed again. They come back through
the state follower like any creative. Models found while restoring state are not asked again
when the campaign already has generated creatives (they were curated when published).

Reviews, every `retire_check_s`: first the challengers (`ChallengerBudget.decide`): once a
challenger has the impressions its segment's CTR needs, or is `challenger_decide_s` old, it is
published again either promoted (stage `promoted`: it joins the main bandit) or retired. Then
retirement of proven creatives with `bandit.Retirement`; a creative whose prob_best stays
below `retire_threshold` for `retire_after_s` and that has at least `retire_min_impressions`
impressions is published again with status `retired`. Catalog creatives are kept unless the
campaign has `allow_retire_catalog`; at least two creatives stay live.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from services.common.lifecycle import is_serving
from services.common.logging import get_logger
from services.common.model_store import (
    ModelStore,
)
from services.common.review import PENDING, awaiting_review, is_blocked, needs_approval
from services.common.segment import ALL_SEGMENTS
from services.inference.bandit import Arm, Retirement
from services.inference.candidates import propose
from services.inference.challengers import (
    CHALLENGER,
    PROMOTED,
    ChallengerBudget,
    generated_calibration,
    honest_prior,
    is_challenger,
    prior_strength,
)
from services.inference.metrics import Metrics
from services.inference.model_swap import ModelSwap
from services.inference.models import ModelBundle
from services.inference.policy import Policy
from services.inference.reviews import Reviews
from services.inference.searches import Record, pick, search_of
from services.inference.searches import record as search_record
from services.inference.settings import Settings
from services.inference.state import State

__all__ = ["Curator"]

_log = get_logger(__name__)

Publish = Callable[[str, dict[str, Any]], Awaitable[None]]


class Curator(ModelSwap, Reviews):
    """Owns `models` (campaign_id → ModelBundle) and keeps the creative pool fresh."""

    def __init__(
        self,
        settings: Settings,
        state: State,
        policy: Policy,
        metrics: Metrics,
        publish_creative: Publish,
        providers: list[str],
        clock: Callable[[], float] = time.time,
        seed: int | None = None,
    ) -> None:
        self._clock = clock  # wall time; simulated time in bench/virtual_loop.py
        # None: fresh entropy per proposal; an int makes proposals repeatable (the harness)
        self._seed = seed
        self._draws = 0
        self.models: dict[str, ModelBundle] = {}
        self._settings = settings
        self._state = state
        self._policy = policy
        self._metrics = metrics
        self._publish = publish_creative
        self._providers = providers
        self._store = ModelStore(settings.model_store_url)
        self._keys = settings.trusted_key_set()
        if not self._keys:
            _log.warning(
                "no_trusted_model_signing_keys",
                detail="ADMUSE_INFERENCE_TRUSTED_KEYS is empty: every published model will be "
                "refused; only catalog creatives serve",
            )
        else:
            _log.info("trusting_model_signing_keys", key_ids=self._keys.key_ids)
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._refused: set[tuple[str, str]] = set()
        self._curating: dict[str, asyncio.Lock] = {}
        self._searches: dict[str, str] = {}  # decided challenger -> its search (`searches`)
        # Rollback (services/inference/rollback.py): the bundle each swap replaced, versions
        # rolled back (never loaded again by this process), and who to tell about a swap.
        self.previous: dict[str, ModelBundle] = {}
        self.rolled_back: set[tuple[str, str]] = set()
        self.on_swap: Callable[[str, str, str | None], None] | None = None
        # False while restoring: models read then were curated when they were published.
        self.following = False
        patience = max(1, round(settings.retire_after_s / settings.retire_check_s))
        self._retirement = Retirement(settings.retire_threshold, patience, min_live=2)
        self.budget = ChallengerBudget(
            share=settings.challenger_share,
            decide_within_s=settings.challenger_decide_s,
            precision=settings.challenger_precision,
            early=settings.challenger_early,
        )

    def model_version(self, campaign_id: str) -> str | None:
        bundle = self.models.get(campaign_id)
        return bundle.version if bundle is not None else None

    def on_model(self, record: dict[str, Any]) -> None:
        """A ModelPublished arrived: load it in the background."""
        task = asyncio.create_task(self._load(record), name=f"load-{record['version']}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def idle(self) -> None:
        """Wait until every load started so far has finished (swapped or refused)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _add_candidates(
        self, campaign_id: str, bundle: ModelBundle, *, refill: bool = False
    ) -> None:
        async with self._curating.setdefault(campaign_id, asyncio.Lock()):
            if self.model_version(campaign_id) == bundle.version:  # not overtaken meanwhile
                await self._generate(campaign_id, bundle, refill=refill)

    def segment_ctr(self, campaign_id: str, segment: str) -> float:
        """The CTR a challenger must beat: that of the segment's most-served proven creative,
        the bandit's incumbent (None-safe; 0 without impressions). Slots and the impressions
        a challenger needs are sized at it, since a challenger worth promoting clicks at least
        this often and needs no more impressions than it. The pooled CTR of the proven
        creatives, used before, also counts the bandit's exploration of weak ones and asked
        for more: at 2 % CTR the demo's mobile segments, where the prize lies, got no slot."""
        s = n = 0.0
        for c in self._state.live_creatives(campaign_id, segment):
            if is_challenger(c):
                continue
            stats = self._state.segment_stats(campaign_id, segment, c["creative_id"])
            if stats is not None and stats.impressions > n:
                s, n = stats.reward_sum, stats.impressions
        return s / n if n else 0.0

    def segment_rate(self, campaign_id: str, segment: str) -> float:
        """Optimized requests per second this instance serves in `segment` ('*': all)."""
        traffic = self._policy.traffic
        if segment != ALL_SEGMENTS:
            return traffic.rate((campaign_id, segment), self._clock())
        now = self._clock()
        return sum(traffic.rate(k, now) for k in traffic.keys() if k[0] == campaign_id)

    def generated_calibration(self, campaign_id: str, bundle: ModelBundle | None = None) -> float:
        """Observed / predicted clicks of the campaign's generated creatives in their segments
        (`challengers.generated_calibration`). Predicted by ``bundle`` when given — the model
        about to be trusted, whose record is what matters — else by the model that proposed
        each (its `predicted_reward`). The proposing models' record mostly measures how far
        their generators strayed from the data: on the demo at 2 % it held a later model's
        word on 3× winners next to a promoted creative (predicted at 0.6-1.2× their truth)
        below the incumbent bar."""
        outcomes = []
        for c in self._state.creatives.values():
            if c["campaign_id"] != campaign_id or c["origin"] != "generated":
                continue
            segment = c.get("segment") or ALL_SEGMENTS
            stats = self._state.segment_stats(campaign_id, segment, c["creative_id"])
            predicted = c.get("predicted_reward")
            if bundle is not None and stats is not None:
                try:
                    predicted = float(bundle.score(segment, [c["attributes"]])[0])
                except Exception:  # an attribute this model cannot encode: its own record
                    pass
            if stats is not None and predicted is not None:
                outcomes.append((float(predicted), stats.reward_sum, float(stats.impressions)))
        return generated_calibration(outcomes)

    def search_record(self, campaign_id: str) -> Record:
        """(promoted, retired) of the campaign's decided challengers per proposal search
        (`searches`), each read off the creative against its segment's proven creatives."""
        campaign = self._state.campaigns.get(campaign_id) or {}
        space = {a["name"]: a for a in campaign.get("attributes", [])}
        decided = []
        for c in self._state.creatives.values():
            if c["campaign_id"] != campaign_id or c["origin"] != "generated":
                continue
            promoted = c.get("stage") == PROMOTED
            if not promoted and c.get("status") != "retired":
                continue  # still being judged
            search = self._searches.get(c["creative_id"])
            if search is None:  # read once, when first seen decided: reviews stay cheap
                segment = c.get("segment") or ALL_SEGMENTS
                proven = [
                    p for p in self._state.live_creatives(campaign_id, segment)
                    if not is_challenger(p) and p["creative_id"] != c["creative_id"]
                ]  # fmt: skip
                search = self._searches[c["creative_id"]] = search_of(c, proven, space)
            decided.append((search, promoted))
        return search_record(decided)

    def challenger_slots(self, campaign_id: str, segment: str) -> int:
        """Challengers the segment's slice can judge at once, from measured traffic and CTR."""
        return self.budget.slots(
            self.segment_rate(campaign_id, segment),
            self.segment_ctr(campaign_id, segment),
            self._policy.challenger_share(campaign_id),
        )

    async def _generate(self, campaign_id: str, bundle: ModelBundle, *, refill: bool) -> None:
        campaign = self._state.campaigns.get(campaign_id)
        if campaign is None or not is_serving(campaign):
            return  # paused or stopped: nothing is generated (services/common/lifecycle.py)
        known = [c for c in self._state.creatives.values() if c["campaign_id"] == campaign_id]
        if not refill and any(c.get("model_version") == bundle.version for c in known):
            return  # already done (e.g. before a restart)
        if not self.following and any(
            c["origin"] == "generated" and c["status"] == "live" for c in known
        ):
            return  # found while restoring: its turn came before this process started
        strength = prior_strength(
            bundle.metadata.get("metrics") or {}, self._settings.max_prior_strength
        )
        admitted = 0
        rho = min(1.0, self.generated_calibration(campaign_id, bundle))
        record = self.search_record(campaign_id)
        for segment in bundle.segments or [ALL_SEGMENTS]:
            serving = self._state.live_creatives(campaign_id, segment)
            # creatives awaiting approval hold their slots: the review queue stays bounded
            own = [
                c for c in serving + awaiting_review(known)
                if c["origin"] == "generated" and (c.get("segment") or ALL_SEGMENTS) == segment
            ]  # fmt: skip
            waiting = sum(1 for c in own if is_challenger(c))
            slots = self.challenger_slots(campaign_id, segment)
            room = min(slots - waiting, int(campaign.get("max_generated", 4)) - len(own))
            if self._settings.n_admit <= 0 or room <= 0:
                continue
            tried = [
                c for c in known
                if c["origin"] == "generated" and (c.get("segment") or ALL_SEGMENTS) == segment
            ]  # fmt: skip
            pool = [c for c in serving if not is_challenger(c)]
            proven = self._policy.arms(campaign_id, segment, pool)
            wanted = min(self._settings.n_admit, room)
            searches = pick(record, wanted, self._rng(bundle.version, segment))
            try:
                proposals = await asyncio.to_thread(
                    propose,
                    bundle,
                    campaign,
                    segment,
                    serving + [c for c in tried if c["status"] != "live"],
                    n_generate=self._settings.n_generate,
                    n_admit=wanted,
                    rng=self._rng(bundle.version, segment),
                    anchors=_by_mean(pool, proven),
                    n_neighbours=self._settings.n_neighbours,
                    trust_radius=self._settings.trust_radius,
                    searches=searches,
                )
            except Exception as exc:  # a generator failure must not take the service down
                _log.error(
                    "candidate_generation_failed",
                    campaign_id=campaign_id,
                    segment=segment,
                    version=bundle.version,
                    error=repr(exc),
                )
                continue
            bar = self._incumbent_score(bundle, segment, pool, proven)
            # Test only what the model itself expects to beat the incumbent, its word on
            # generated creatives discounted by how well it held on earlier ones: it chooses
            # what is worth the slice's traffic, never what is served beyond it.
            # Within `incumbent_margin` of the bar counts: near a proven creative the model's
            # error is about ×2 either way (demo, harness), and a neighbour it rates a little
            # below the incumbent was as often a 3× winner as a loser; losers are retired early.
            floor = bar * (1.0 - self._settings.incumbent_margin)
            worth = [p for p in proposals if rho * p["predicted_reward"] > floor]
            if len(worth) < len(proposals):
                _log.info("candidates_below_incumbent_not_tested", campaign_id=campaign_id,
                          segment=segment, held_back=len(proposals) - len(worth),
                          incumbent_predicted=round(bar, 5))  # fmt: skip
            for proposal in worth[:room]:  # best predicted first
                proposal["prior_alpha"], proposal["prior_beta"] = honest_prior(
                    rho * proposal["predicted_reward"], strength, proven
                )
                key, creative = _creative_record(
                    campaign_id, segment, bundle, proposal, self._clock()
                )
                if is_blocked(self._state.creatives.get(key)):
                    continue  # a person blocked this design: never again
                if needs_approval(campaign):
                    creative["status"] = PENDING  # serves once a person approves it
                await self._publish(key, creative)
                # Visible at once (the follower reads the same record back), so the next
                # model's candidates count it against max_generated.
                self._state.apply_creative(key, creative)
                admitted += 1
        if admitted:
            self._metrics.creatives_admitted.labels(campaign_id).inc(admitted)
        if refill and not admitted:
            return  # a review found no free slot: nothing to say every few seconds
        _log.info(
            "generated_creatives_admitted",
            campaign_id=campaign_id,
            version=bundle.version,
            admitted=admitted,
            prior_strength=round(strength, 2),
            generated_calibration=round(rho, 3),
            searches={k: f"{w} won / {lost} lost" for k, (w, lost) in record.items()},
            refill=refill,
        )

    def _rng(self, version: str, segment: str) -> np.random.Generator:
        """One generator per proposal (worker threads share none), seeded when asked."""
        if self._seed is None:
            return np.random.default_rng()
        self._draws += 1
        digest = hashlib.sha256(f"{version}|{segment}|{self._draws}".encode()).digest()
        return np.random.default_rng([self._seed, int.from_bytes(digest[:8], "big")])

    @staticmethod
    def _incumbent_score(
        bundle: ModelBundle, segment: str, pool: list[dict[str, Any]], proven: list[Arm]
    ) -> float:
        """The model's prediction for the proven creative with the best posterior mean."""
        if not pool:
            return float("-inf")
        means = [a.alpha / (a.alpha + a.beta) for a in proven]
        best = pool[int(np.argmax(means))]
        try:
            return float(bundle.score(segment, [best["attributes"]])[0])
        except Exception:  # an attribute the model cannot encode: no bar from it
            return float("-inf")


def _by_mean(pool: list[dict[str, Any]], proven: list[Arm]) -> list[dict[str, Any]]:
    """The proven creatives, best posterior mean first (the incumbent leads the anchors)."""
    means = [a.alpha / (a.alpha + a.beta) for a in proven]
    return [pool[i] for i in np.argsort(-np.asarray(means), kind="stable")] if pool else []


def _creative_record(
    campaign_id: str, segment: str, bundle: ModelBundle, proposal: dict[str, Any], now: float
) -> tuple[str, dict[str, Any]]:
    attributes = proposal["attributes"]
    digest = hashlib.sha256(
        json.dumps([campaign_id, segment, attributes], sort_keys=True, default=str).encode()
    ).hexdigest()[:16]
    creative_id = f"gen-{digest}"
    return creative_id, {
        "creative_id": creative_id,
        "campaign_id": campaign_id,
        "origin": "generated",
        "name": f"{bundle.version} {segment}",
        "attributes": attributes,
        "status": "live",
        "stage": CHALLENGER,
        "segment": None if segment == ALL_SEGMENTS else segment,
        "model_version": bundle.version,
        "predicted_reward": float(proposal["predicted_reward"]),
        "prior_alpha": float(proposal["prior_alpha"]),
        "prior_beta": float(proposal["prior_beta"]),
        "created_at": int(now * 1000),
        "retired_at": None,
    }
