"""Rollback benchmark: detection delay and false alarms of the sequential rollback test.

    python bench/bench_rollback.py [--runs 400] [--batch 50]

Simulated traffic: each look adds `batch` impressions to the new model's creatives and to
the creatives serving before it (Bernoulli rewards). Scenarios (base CTR 5 %): the new model
at 1 % (bad), 3 % (worse), 5 % (same: false alarms), 6 % (better). Reported per scenario:
rollback rate and the median new-model impressions until the verdict.

Baselines in the same run:
- fixed horizon: one z-test (α = 0.05 one-sided) after the number of impressions that gives
  80 % power against the "worse" drop (5 % → 3 %): its delay is that n, whatever the truth;
- naive peeking: the same z-test repeated at every look (it "detects" quickly but fires on
  noise — its false-alarm rate in the "same" scenario is the point).
The ratio reported is the sequential test's median delay over the fixed horizon's n.
Pure numpy; no broker.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.inference.rollback import SequentialTest

BASE = 0.05
SCENARIOS = {"bad 1%": 0.01, "worse 3%": 0.03, "same 5%": 0.05, "better 6%": 0.06}
Z95 = 1.6448536269514722
Z80 = 0.8416212335729143


def _z(n_new: int, r_new: int, n_base: int, r_base: int) -> float:
    pooled = min(max((r_new + r_base) / (n_new + n_base), 1e-4), 1 - 1e-4)
    var = pooled * (1 - pooled) * (1 / n_new + 1 / n_base)
    return (r_new / n_new - r_base / n_base) / math.sqrt(var)


def fixed_n(p0: float, p1: float) -> int:
    """Impressions per side for 80 % power at one-sided α = 0.05."""
    pbar = (p0 + p1) / 2
    num = Z95 * math.sqrt(2 * pbar * (1 - pbar)) + Z80 * math.sqrt(p0 * (1 - p0) + p1 * (1 - p1))
    return math.ceil((num / (p0 - p1)) ** 2)


def run(test: SequentialTest, p_new: float, batch: int, rng: np.random.Generator) -> tuple:
    n = r_new = r_base = 0
    peek_fired = None
    while True:
        n += batch
        r_new += int(rng.binomial(batch, p_new))
        r_base += int(rng.binomial(batch, BASE))
        if peek_fired is None and n >= 100 and _z(n, r_new, n, r_base) < -Z95:
            peek_fired = n
        verdict = test.verdict(n, r_new, n, r_base)
        if verdict != "wait":
            return verdict, n, peek_fired


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=400)
    ap.add_argument("--batch", type=int, default=50)
    args = ap.parse_args()
    test = SequentialTest()  # the service defaults
    horizon = fixed_n(BASE, 0.03)
    print(
        f"sequential test: alpha={test.alpha} rho={test.rho:g} min={test.min_impressions} "
        f"horizon={test.horizon_impressions}; fixed-horizon baseline n={horizon} per side"
    )
    rng = np.random.default_rng(15)
    print(f"{'scenario':<11} {'rollback':>9} {'median n':>9} {'p90 n':>7} {'peek FA/det':>12} "
          f"{'fixed rej':>9} {'ratio':>6}")  # fmt: skip
    for name, p in SCENARIOS.items():
        results = [run(test, p, args.batch, rng) for _ in range(args.runs)]
        rolled = [n for v, n, _ in results if v == "worse"]
        peeks = sum(1 for *_, peek in results if peek is not None)
        fixed = 0
        for _ in range(args.runs):
            rn, rb = rng.binomial(horizon, p), rng.binomial(horizon, BASE)
            fixed += _z(horizon, rn, horizon, rb) < -Z95
        delays = [n for _, n, _ in results]
        med = statistics.median(rolled) if rolled else float("nan")
        p90 = float(np.percentile(delays, 90))
        ratio = med / horizon if rolled and p < BASE else float("nan")
        print(
            f"{name:<11} {len(rolled) / args.runs:>9.3f} {med:>9.0f} {p90:>7.0f} "
            f"{peeks / args.runs:>12.3f} {fixed / args.runs:>9.3f} {ratio:>6.2f}"
        )


if __name__ == "__main__":
    main()
