"""The closed loop on simulated time: the real decision code, without Kafka or wall clocks.

`bench_generation.py` runs `admuse demo` per cell: the whole stack on a shared 2-core machine,
where a cell asking for 100 req/s got about 25. This harness drives the same decision code on a
simulated clock and simulated traffic, so a cell is deterministic per seed (up to torch's and
the worker threads' scheduling) and gets exactly the traffic it asks for:

- inference: `State`, `Policy` (experiment arms, Thompson snapshots, the challenger mix) and
  `Curator` (the real admission path: signed artifacts in a model store, `fetch_verified`,
  `ModelBundle.load`, `propose`, the incumbent bar, honest priors, the challenger budget's
  reviews, promotion and retirement), all on the simulated clock;
- trainer: `TrainerState` (the retrain triggers and the traffic floor), `build_model` (train,
  ONNX export, parity check, quality gate), the unchanged-model check, `store_model` (signed),
  and the freshness check (`prequential_logloss`) every 10 simulated seconds;
- simulator: the scenario's `GroundTruth` draws every click and scores every decision.

How it differs from the stack (say so next to its numbers): no Kafka, no features service — a
decision's reward reaches the stats and the trainer's buffer after the click delay (a click) or
the attribution window (no click), as features settles them; stats are republished to inference
once per simulated second (plain counts, no decay); a model trains in zero simulated time and
serves `train_latency_s` later (the stack trains in a worker thread while traffic flows: ~10-20 s
on this machine); one process, one inference replica; every request is shown.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import math
import random
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from services.analysis.compare import compare_arms
from services.common.campaign import campaign_record, creative_records
from services.common.codec import SchemaRegistry
from services.common.model_store import ModelStore
from services.common.segment import ALL_SEGMENTS, segment_of
from services.common.settings import KafkaSettings
from services.common.signing import Signer, generate_key_pair
from services.common.topics import Topics
from services.inference.bandit import ARM_CATALOG, ARM_CONTROL, ARM_OPTIMIZED
from services.inference.challengers import is_challenger
from services.inference.curator import Curator
from services.inference.metrics import Metrics
from services.inference.policy import Policy
from services.inference.settings import Settings as InferenceSettings
from services.inference.state import State
from services.simulator.groundtruth import GroundTruth
from services.simulator.scenario import Scenario, parse_scenario
from services.simulator.stratify import stratified_difference
from services.trainer.buffer import RewardRow, TrainingBuffer
from services.trainer.freshness import prequential_logloss
from services.trainer.pipeline import QualityRefused, build_model, store_model
from services.trainer.settings import Settings as TrainerSettings
from services.trainer.state import TrainerState
from services.trainer.train import TrainConfig, TrainingError

__all__ = ["Cell", "run_cell"]

ARMS = (ARM_CONTROL, ARM_CATALOG, ARM_OPTIMIZED)
T0 = 1_800_000_000.0  # simulated epoch seconds at the start of a cell


@dataclass
class Cell:
    """One run: the scenario, traffic, budget, seed and the services' settings (env-style)."""

    raw: dict[str, Any]
    rate: float
    seed: int
    budget_s: float = 300.0
    train_latency_s: float = 15.0
    inference_env: dict[str, str] = field(default_factory=dict)
    trainer_env: dict[str, str] = field(default_factory=dict)


@dataclass
class _Served:
    p: list[float] = field(default_factory=list)
    regret: list[float] = field(default_factory=list)
    segment: list[str] = field(default_factory=list)
    clicks: int = 0


class _Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


def _settings(
    cell: Cell, public: str, private: str, store: str
) -> tuple[InferenceSettings, TrainerSettings]:
    # the demo's pace (services/cli/stack.py) unless the cell overrides it
    inf = {"challenger_share": 0.2, "challenger_decide_s": 90.0, "challenger_precision": 1.0,
           "retire_check_s": 10.0, "trusted_keys": public, "policy_refresh_ms": 0,
           "api_keys": "virtual", "ADMUSE_MODEL_STORE_URL": store,
           "ADMUSE_PSEUDONYM_SECRET": "virtual-loop"}  # fmt: skip
    trn = {"profile": "small", "retrain_min_new_positives": 20, "retrain_floor_rewards": 1000,
           "retrain_floor_min_s": 10.0, "retrain_every_minutes": 2.0, "min_rows": 200,
           "min_positives": 20, "signing_key": private, "device": "cpu",
           "ADMUSE_MODEL_STORE_URL": store}  # fmt: skip
    inf.update({k.lower(): v for k, v in cell.inference_env.items()})
    trn.update({k.lower(): v for k, v in cell.trainer_env.items()})
    return InferenceSettings(**inf), TrainerSettings(**trn)


class _Loop:
    """One cell's world: the services' objects, the pending rewards, the books."""

    def __init__(self, cell: Cell, scenario: Scenario, store_dir: Path) -> None:
        self.cell, self.scenario = cell, scenario
        self.truth = GroundTruth(scenario)
        self.clock = _Clock()
        private, public, _ = generate_key_pair()
        self.inf, self.trn = _settings(cell, public, private, Path(store_dir).as_uri())
        self.signer = Signer(private)
        self.state = State()
        self.store = ModelStore(Path(store_dir).as_uri())
        self.policy = Policy(
            self.state, exploration_floor=self.inf.exploration_floor,
            n_draws=self.inf.thompson_draws,
            refresh_ms=0, backoff_impressions=self.inf.backoff_impressions,
            challenger_share=self.inf.challenger_share,
            challenger_weigh=self.inf.challenger_weigh, seed=cell.seed, clock=self.clock,
        )  # fmt: skip
        self.curator = Curator(self.inf, self.state, self.policy, Metrics(), self._publish,
                               ["CPUExecutionProvider"], clock=self.clock,
                               seed=cell.seed)  # fmt: skip
        self.curator.following = True
        buffer = TrainingBuffer(self.trn.buffer_max_rows, self.trn.buffer_max_age_ms)
        topics = Topics.from_settings(KafkaSettings())
        self.trainer = TrainerState(self.trn, SchemaRegistry.load(), topics, buffer)
        spec = scenario.campaign
        now = datetime.fromtimestamp(T0, UTC)
        self.campaign = campaign_record(spec, 1, now)
        self.cid = spec.campaign_id
        self.state.apply_campaign(self.cid, self.campaign)
        self.trainer.campaigns[self.cid] = self.campaign
        for rec in creative_records(spec, now):
            self.state.apply_creative(rec["creative_id"], rec)
            self.trainer.creatives[rec["creative_id"]] = rec
        self.counts: dict[tuple[str, str], list[float]] = {}
        self.pending: list[tuple[float, int, str, str, float, int]] = []
        self.served = {a: _Served() for a in ARMS}
        self.models = 0
        self.on_generated = self.on_challengers = 0  # full-loop impressions
        self.unchanged = 0
        self.refused = 0
        self.waiting_model: tuple[float, dict[str, Any]] | None = None
        self.last_digest: str | None = None
        self.built: Any = None
        self._seq = 0

    async def _publish(self, key: str, record: dict[str, Any]) -> None:
        self.trainer.creatives[key] = record  # what admuse.creatives carries to the trainer

    # -- traffic -----------------------------------------------------------------------
    def request(self, rng: random.Random) -> None:
        aud = self.scenario.audience
        seg = rng.choices(aud.segments, weights=[s.share for s in aud.segments])[0]
        user = f"sim{self.cell.seed}-{seg.name}-{rng.randrange(aud.users_per_segment)}"
        pseudonym = hashlib.sha256(user.encode()).hexdigest()
        segment = segment_of(self.campaign["segment_keys"], seg.context)
        choice = self.policy.choose(self.campaign, segment, pseudonym)
        at_s = self.clock.t - T0
        p = self.truth.p_click(seg.name, choice.creative["attributes"], at_s)
        best = self.truth.optimum(seg.name, at_s).p_click
        clicked = rng.random() < p
        s = self.served[choice.arm]
        if choice.creative["origin"] == "generated":
            self.on_generated += 1
            self.on_challengers += is_challenger(choice.creative)
        s.p.append(p)
        s.segment.append(seg.name)
        s.regret.append(max(best - p, 0.0))
        s.clicks += clicked
        window = self.campaign["attribution_window_ms"] / 1000
        delay = min(1.5 * math.exp(rng.gauss(0.0, 0.7)), window) if clicked else window
        self._seq += 1
        heapq.heappush(self.pending, (self.clock.t + delay, self._seq, segment,
                                      choice.creative["creative_id"], choice.propensity,
                                      int(clicked)))  # fmt: skip

    def settle(self) -> bool:
        """Rewards due by now into the stats and the trainer's buffer; True if any."""
        moved = False
        while self.pending and self.pending[0][0] <= self.clock.t:
            at, seq, segment, creative, propensity, reward = heapq.heappop(self.pending)
            for seg in {segment, ALL_SEGMENTS}:
                c = self.counts.setdefault((seg, creative), [0.0, 0.0])
                c[0] += reward
                c[1] += 1
            decided_ms = int((at - self.campaign["attribution_window_ms"] / 1000) * 1000)
            row = RewardRow(f"d{seq}", segment, creative, propensity, float(reward), decided_ms)
            self.trainer.add_reward(self.cid, row)
            moved = True
        return moved

    def publish_stats(self) -> None:
        for (segment, creative), (s, n) in self.counts.items():
            self.state.apply_stats(f"{self.cid}/{segment}/{creative}", {
                "campaign_id": self.cid, "segment": segment, "creative_id": creative,
                "impressions": int(n), "reward_sum": s, "alpha": 1 + s, "beta": 1 + n - s,
                "updated_at": int(self.clock.t * 1000), "window_start": None,
            })  # fmt: skip

    # -- trainer -----------------------------------------------------------------------
    def maybe_train(self) -> None:
        now = self.clock.t
        if self.waiting_model is not None or self.cid not in self.trainer.due(now):
            return
        rows = self.trainer.buffer.rows(self.cid)
        self.trainer.mark_trained(self.cid, now)
        cfg = TrainConfig.small() if self.trn.profile == "small" else TrainConfig()
        cfg = cfg.with_overrides(gan_steps=self.trn.gan_steps, reward_epochs=self.trn.reward_epochs,
                                 max_reward_steps=self.trn.reward_max_steps,
                                 reward_bends=self.trn.reward_bends)  # fmt: skip
        try:
            built = build_model(self.campaign, dict(self.trainer.creatives), rows, cfg,
                                seed=self.trn.seed, gate=self.trn.gate(),
                                now=datetime.fromtimestamp(now, UTC))  # fmt: skip
            digest = hashlib.sha256(built.exported.generator + built.exported.reward_model)
            if digest.hexdigest() == self.last_digest:
                self.unchanged += 1
                return
            record = store_model(self.store, built, self.signer)
        except (QualityRefused, TrainingError):
            self.refused += 1
            return
        self.last_digest, self.built = digest.hexdigest(), built
        self.trainer.last_model[self.cid] = (self.last_digest, built)
        self.waiting_model = (now + self.cell.train_latency_s, record)

    async def maybe_swap(self) -> None:
        if self.waiting_model is None or self.waiting_model[0] > self.clock.t:
            return
        _, record = self.waiting_model
        self.waiting_model = None
        self.state.published[self.cid] = record
        self.curator.on_model(record)
        await self.curator.idle()
        self.models += 1

    def check_freshness(self) -> None:
        held_out = self.built.metrics.get("reward_logloss") if self.built else None
        if held_out is None or self.cid in self.trainer.stale:
            return
        found = prequential_logloss(self.built, self.campaign, dict(self.trainer.creatives),
                                    self.trainer.since_trained(self.cid))  # fmt: skip
        if found is not None:
            loss, se = found
            if loss - 2 * se > held_out * (1 + self.trn.retrain_loss_increase):
                self.trainer.mark_stale(self.cid)


async def _run(cell: Cell) -> dict[str, Any]:
    scenario = parse_scenario(cell.raw)
    with tempfile.TemporaryDirectory(prefix="admuse-vt-") as tmp:
        loop = _Loop(cell, scenario, Path(tmp))
        rng = random.Random(f"virtual:{cell.seed}")
        np.random.seed(cell.seed)
        t_end = T0 + cell.budget_s
        next_stats = next_review = next_fresh = T0
        while loop.clock.t < t_end:
            loop.clock.t += rng.expovariate(cell.rate)
            loop.request(rng)
            if loop.clock.t >= next_stats:  # features' stats, once a simulated second
                if loop.settle():
                    loop.publish_stats()
                next_stats += 1.0
                loop.maybe_train()
                await loop.maybe_swap()
            if loop.clock.t >= next_review:
                await loop.curator.review_retirement()
                next_review += loop.inf.retire_check_s
            if loop.clock.t >= next_fresh:
                loop.check_freshness()
                next_fresh += 10.0
        return _summary(loop)


def run_cell(cell: Cell) -> dict[str, Any]:
    """Run one cell; the summary in the shape `bench_generation.markdown` prints."""
    return asyncio.run(_run(cell))


def _mean_iv(xs: list[float]) -> tuple[float, float, float]:
    a = np.asarray(xs, dtype=np.float64)
    if a.size == 0:
        return math.nan, math.nan, math.nan
    m, se = float(a.mean()), float(a.std(ddof=1) / math.sqrt(a.size)) if a.size > 1 else 0.0
    return m, m - 1.96 * se, m + 1.96 * se


def _summary(loop: _Loop) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for arm, s in loop.served.items():
        ctr, lo, hi = _mean_iv(s.p)
        reg, rlo, rhi = _mean_iv(s.regret)
        out[arm] = {"impressions": len(s.p), "clicks": s.clicks, "true_ctr": ctr,
                    "true_ctr_low": lo, "true_ctr_high": hi, "regret_per_impression": reg,
                    "regret_per_impression_low": rlo,
                    "regret_per_impression_high": rhi}  # fmt: skip
    cat, opt = loop.served[ARM_CATALOG], loop.served[ARM_OPTIMIZED]
    cmp = compare_arms((cat.clicks, len(cat.p)), (opt.clicks, len(opt.p)))
    a, b = np.asarray(opt.p), np.asarray(cat.p)
    diff = float(a.mean() - b.mean())
    se = math.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    gen = {"lift": cmp.lift.estimate, "lift_low": cmp.lift.low, "lift_high": cmp.lift.high,
           "true_ctr_difference": diff, "true_ctr_difference_low": diff - 1.96 * se,
           "true_ctr_difference_high": diff + 1.96 * se}  # fmt: skip
    d, lo, hi = stratified_difference(
        zip(opt.segment, opt.p, strict=True),
        zip(cat.segment, cat.p, strict=True),
        {s.name: s.share for s in loop.scenario.audience.segments},
    )
    gen.update(
        true_ctr_difference_stratified=d,
        true_ctr_difference_stratified_low=lo,
        true_ctr_difference_stratified_high=hi,
    )
    gen_ids = [c for c in loop.state.creatives.values() if c["origin"] == "generated"]
    out.update(
        generation=gen,
        verdict=_verdict(gen["lift_low"], gen["lift_high"]),
        verdict_true=_verdict(gen["true_ctr_difference_low"], gen["true_ctr_difference_high"]),
        verdict_stratified=_verdict(gen["true_ctr_difference_stratified_low"],
                                    gen["true_ctr_difference_stratified_high"]),
        models=loop.models, models_unchanged=loop.unchanged, models_refused=loop.refused,
        admitted=len(gen_ids),
        promoted=sum(1 for c in gen_ids if c.get("stage") == "promoted"),
        retired=sum(1 for c in gen_ids if c["status"] == "retired"),
        requests=sum(len(s.p) for s in loop.served.values()),
    )  # fmt: skip
    out["creatives"] = _generated(loop, gen_ids)
    n_opt = max(len(opt.p), 1)
    out["challenger_share"] = loop.on_challengers / n_opt
    out["generated_share"] = loop.on_generated / n_opt
    return out


def _generated(loop: _Loop, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each generated creative: its segment, true CTR against the best human one, its
    impressions there, what became of it (the evidence for how the budget was spent)."""
    out = []
    names = {segment_of(loop.campaign["segment_keys"], s.context): s.name
             for s in loop.scenario.audience.segments}  # fmt: skip
    for c in records:
        seg = c.get("segment") or ALL_SEGMENTS
        name = names.get(seg)
        if name is None:
            continue
        n = loop.counts.get((seg, c["creative_id"]), [0.0, 0.0])
        out.append({
            "segment": name, "true": round(loop.truth.p_click(name, c["attributes"]), 5),
            "best_human": round(loop.truth.best_catalog(name).p_click, 5),
            "predicted": round(float(c.get("predicted_reward") or 0), 5),
            "impressions": int(n[1]), "clicks": int(n[0]),
            "fate": c["status"] if c["status"] == "retired" else c.get("stage"),
            "attributes": c["attributes"], "version": c.get("model_version"),
        })  # fmt: skip
    return out


def _verdict(low: float, high: float) -> str:
    return "beats" if low > 0 else ("WORSE" if high < 0 else "not worse")
