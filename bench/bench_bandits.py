"""The project's bandit against MABWiser (the library people would otherwise use), on the
simulator's ground truth: same scenario, same seeds, same creatives (the catalog; no
generation), same delayed feedback.

    python bench/bench_bandits.py [--scenario demo] [--rounds 20000] [--seeds 5] [--batch 100]
                                  [--half-life-s S]

Each round a user of a segment (by the scenario's shares) arrives, the policy picks one of the
campaign's seed creatives, and a click is drawn from the ground truth (drift included, at the
scenario's arrival rate). Feedback reaches every policy in batches of `--batch` rounds, as it
reaches inference through features. Policies:

- admuse: inference's `Policy` with the service's defaults (Thompson sampling with its
  exploration floor, back-off of sparse segments to the campaign roll-up), fed
  `CreativeStats` built by features' counters (`--half-life-s` sets features' decay; the
  policy reads it on a simulated clock); ablations vary the floor and the back-off;
- mabwiser-ts: MABWiser's Thompson sampling, one model per segment;
- mabwiser-lints: MABWiser's LinTS (its defaults), one model with the segment one-hot as
  context.

Both MABWiser policies use the library's defaults, as someone reaching for it would.

Every policy starts from the same uniform warm-up batch (MABWiser cannot predict unfitted).
Regret per round is the best seed's true click probability in that segment (at that time) minus
the chosen one's; reported: cumulative regret and CTR, mean over seeds with a 95 % t-interval,
and admuse's regret relative to each library policy (ratio < 1: admuse is better).
"""

from __future__ import annotations

import argparse
import functools
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from mabwiser.mab import MAB, LearningPolicy
from scipy import stats as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.common.segment import ALL_SEGMENTS
from services.features.stats import Counters, StatsKey, stats_record
from services.inference.policy import Policy
from services.inference.settings import Settings
from services.inference.state import State
from services.simulator.groundtruth import GroundTruth
from services.simulator.scenario import Scenario, load_scenario

T0_S = 1_800_000_000.0  # the simulated clock starts here


class _Admuse:
    """inference's Policy over a State fed with features' stats records."""

    def __init__(
        self,
        scenario: Scenario,
        seed: int,
        half_life_s: float | None,
        floor: float | None = None,
        backoff: int | None = None,
    ) -> None:
        defaults = Settings.model_fields  # the service's defaults unless an ablation says
        floor = defaults["exploration_floor"].default if floor is None else floor
        backoff = defaults["backoff_impressions"].default if backoff is None else backoff
        self.cid = scenario.campaign.campaign_id
        self.half_life_s = half_life_s
        self.now_s = T0_S
        self.state = State()
        self.campaign = {"campaign_id": self.cid, "holdout_share": 0.0, "revision": 1}
        self.state.apply_campaign(self.cid, self.campaign)
        self.ids = [scenario.campaign.seed_id(s) for s in scenario.campaign.seeds]
        for cid in self.ids:
            self.state.apply_creative(cid, {"creative_id": cid, "campaign_id": self.cid,
                                            "segment": None, "origin": "catalog",
                                            "status": "live", "attributes": {}})  # fmt: skip
        self.policy = Policy(self.state, exploration_floor=floor, n_draws=1000, refresh_ms=0,
                             backoff_impressions=backoff, seed=seed,
                             clock=lambda: self.now_s)  # fmt: skip
        self.counters: dict[StatsKey, Counters] = {}

    def choose(self, segment: str, _context: np.ndarray) -> int:
        choice = self.policy.choose(self.campaign, segment, "u")
        return self.ids.index(choice.creative["creative_id"])

    def learn(self, rows: list[tuple[str, np.ndarray, int, float, float]]) -> None:
        changed = set()
        for segment, _ctx, arm, reward, at_s in rows:
            rec = {"reward": reward, "clicked": reward > 0, "converted": False}
            for seg in (segment, ALL_SEGMENTS):
                key = StatsKey(self.cid, seg, self.ids[arm])
                c = self.counters.get(key, Counters())
                self.counters[key] = c.add(rec, int(at_s * 1000), self.half_life_s)
                changed.add(key)
        for key in changed:
            record = stats_record(key, self.counters[key], prior_alpha=1.0, prior_beta=1.0,
                                  half_life_s=self.half_life_s, window_ms=1,
                                  now_ms=int(self.now_s * 1000))  # fmt: skip
            self.state.apply_stats(key.key, record)


class _MabTs:
    """MABWiser Thompson sampling, one model per segment."""

    def __init__(self, arms: int, segments: list[str], seed: int) -> None:
        self.models = {
            s: MAB(list(range(arms)), LearningPolicy.ThompsonSampling(), seed=seed + i)
            for i, s in enumerate(segments)
        }
        self.fitted: set[str] = set()

    def choose(self, segment: str, _context: np.ndarray) -> int:
        return int(self.models[segment].predict())

    def learn(self, rows: list[tuple[str, np.ndarray, int, float, float]]) -> None:
        for seg, model in self.models.items():
            mine = [(a, r) for s, _c, a, r, _t in rows if s == seg]
            if not mine:
                continue
            arms, rewards = zip(*mine, strict=True)
            fit = model.partial_fit if seg in self.fitted else model.fit
            fit(list(arms), list(rewards))
            self.fitted.add(seg)


class _MabLinTs:
    """MABWiser LinTS, one model, segment one-hot as the context."""

    def __init__(self, arms: int, seed: int) -> None:
        self.model = MAB(list(range(arms)), LearningPolicy.LinTS(), seed=seed)
        self.fitted = False

    def choose(self, _segment: str, context: np.ndarray) -> int:
        return int(self.model.predict(context[None, :]))

    def learn(self, rows: list[tuple[str, np.ndarray, int, float, float]]) -> None:
        arms = [a for _s, _c, a, _r, _t in rows]
        rewards = [r for _s, _c, _a, r, _t in rows]
        contexts = np.stack([c for _s, c, _a, _r, _t in rows])
        (self.model.partial_fit if self.fitted else self.model.fit)(arms, rewards, contexts)
        self.fitted = True


def play(
    scenario: Scenario, make: Callable[[], object], seed: int, rounds: int, batch: int
) -> tuple[float, float]:
    """(cumulative expected regret, realised CTR) of one policy over one seeded run."""
    truth = GroundTruth(scenario)
    seeds = scenario.campaign.seeds
    segments = [s.name for s in scenario.audience.segments]
    keys = [scenario.segment_key(s) for s in scenario.audience.segments]
    onehot = np.eye(len(segments))
    rng = random.Random(seed)  # the same users and coin flips for every policy
    shares = scenario.shares()
    policy = make()
    regret = clicks = 0.0
    pending: list[tuple[str, np.ndarray, int, float, float]] = []
    for i in range(rounds):
        at_s = i / scenario.audience.rate
        if isinstance(policy, _Admuse):
            policy.now_s = T0_S + at_s
        s = rng.choices(range(len(segments)), shares)[0]
        coin = rng.random()
        p = [truth.p_click(segments[s], c.attributes, at_s) for c in seeds]
        arm = rng.randrange(len(seeds)) if i < batch else policy.choose(keys[s], onehot[s])
        reward = float(coin < p[arm])
        regret += max(p) - p[arm]
        clicks += reward
        pending.append((keys[s], onehot[s], arm, reward, T0_S + at_s))
        if len(pending) >= batch:
            policy.learn(pending)
            pending = []
    return regret, clicks / rounds


def _interval(xs: list[float]) -> tuple[float, float, float]:
    m = statistics.fmean(xs)
    if len(xs) < 2:
        return m, m, m
    h = st.t.ppf(0.975, len(xs) - 1) * statistics.stdev(xs) / len(xs) ** 0.5
    return m, m - h, m + h


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenario", default="demo")
    ap.add_argument("--rounds", type=int, default=20_000)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--half-life-s", type=float, default=None)
    ap.add_argument(
        "--only",
        default="admuse,admuse-floor-0.02,mabwiser-ts,mabwiser-lints",
        help="comma-separated policy names to run (ablations: admuse-floor-0, admuse-no-backoff)",
    )
    args = ap.parse_args()
    scenario = load_scenario(args.scenario)
    n_arms = len(scenario.campaign.seeds)
    segments = [scenario.segment_key(s) for s in scenario.audience.segments]
    policies: dict[str, Callable[[int], object]] = {
        "admuse": lambda sd: _Admuse(scenario, sd, args.half_life_s),
        # ablations: the floor before #19, no floor, no back-off to the campaign roll-up
        "admuse-floor-0.02": lambda sd: _Admuse(scenario, sd, args.half_life_s, floor=0.02),
        "admuse-floor-0": lambda sd: _Admuse(scenario, sd, args.half_life_s, floor=0.0),
        "admuse-no-backoff": lambda sd: _Admuse(scenario, sd, args.half_life_s, backoff=0),
        "mabwiser-ts": lambda sd: _MabTs(n_arms, segments, sd),
        "mabwiser-lints": lambda sd: _MabLinTs(n_arms, sd),
    }
    print(f"scenario {args.scenario}: {n_arms} creatives, {len(segments)} segments, "
          f"{args.rounds} rounds, feedback every {args.batch}, seeds 1..{args.seeds}, "
          f"half-life {args.half_life_s}; {platform.processor() or platform.machine()}, "
          f"{time.strftime('%Y-%m-%d')}")  # fmt: skip
    if args.only:
        policies = {k: v for k, v in policies.items() if k in args.only.split(",")}
    results: dict[str, list[tuple[float, float]]] = {}
    for name, make in policies.items():
        started = time.perf_counter()
        results[name] = [
            play(scenario, functools.partial(make, sd), sd, args.rounds, args.batch)
            for sd in range(1, args.seeds + 1)
        ]
        seconds = time.perf_counter() - started
        r = _interval([x[0] for x in results[name]])
        c = _interval([x[1] for x in results[name]])
        print(f"  {name:15s} regret {r[0]:8.1f} [{r[1]:.1f}, {r[2]:.1f}]   "
              f"CTR {c[0]:.4f} [{c[1]:.4f}, {c[2]:.4f}]   {seconds:.0f} s")  # fmt: skip
    if "admuse" not in results:
        return
    ours = [x[0] for x in results["admuse"]]
    for name in policies:
        if name.startswith("admuse"):
            continue
        ratio = _interval([a / b for a, b in zip(ours, (x[0] for x in results[name]), strict=True)])
        print(f"  admuse regret / {name} regret: {ratio[0]:.2f} [{ratio[1]:.2f}, {ratio[2]:.2f}]")


if __name__ == "__main__":
    main()
