"""Benchmark: the whole loop on the `bench` scenario (`admuse demo --scenario bench`).

Runs the demo as a user would (real broker, the four services as processes, the simulator),
then reads the run's result.json and prints the headline numbers:

- optimized-arm CTR against the control arm measured in the same run (the baseline: the
  uniform policy over the human catalog) — target ratio >= 1.3;
- per segment where the scenario puts the optimum outside the catalog, the best generated
  creative's true CTR against the best human creative's — target: above.

    python bench/bench_demo.py [--budget 150] [--seed 0] [--repeats 1]

Broker from ADMUSE_KAFKA_BOOTSTRAP_SERVERS (default 127.0.0.1:9092); each repeat uses its own
topic prefix and run folder under .run/bench-demo-*/. With several repeats it quotes medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FAR = 1.5


def run_once(budget: float, seed: int) -> dict:
    tag = f"bench-demo-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:4]}"
    run = REPO / ".run" / tag
    cmd = [
        sys.executable,
        "-c",
        "from services.cli import app; app()",
        "demo",
        "--scenario",
        "bench",
        "--budget",
        str(budget),
        "--seed",
        str(seed),
        "--run-dir",
        str(run),
        "--topic-prefix",
        f"{tag}.",
        "--no-live",
    ]
    env = {**os.environ, "COLUMNS": "140"}
    env.setdefault("ADMUSE_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    t0 = time.monotonic()
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(
            f"admuse demo failed ({proc.returncode}):\n{proc.stdout[-4000:]}{proc.stderr[-2000:]}"
        )
    result = json.loads((run / "result.json").read_text())
    result["wall_s"] = time.monotonic() - t0
    result["run_dir"] = str(run)
    return result


def headline(result: dict) -> dict:
    arms, cmp = result["arms"], result["comparison"]
    outside = [b for b in result["best"] if b["optimum_outside_catalog"]]
    wins = [b for b in outside if b["generated_beats_human"]]
    # where the scenario puts the optimum well outside the catalog (>= 1.5x the best human)
    far = [b for b in outside if b["optimum_true_ctr"] >= FAR * b["best_human"]["true_ctr"]]
    return {
        "control_ctr": arms["control"]["ctr"],
        "optimized_ctr": arms["optimized"]["ctr"],
        "ctr_ratio": cmp["ctr_ratio"],
        "true_ctr_ratio": cmp["true_ctr_ratio"],
        "lift_low": cmp["lift_low"],
        "lift_high": cmp["lift_high"],
        "p_beats": cmp["prob_optimized_beats_control"],
        "srm_p": cmp["srm_p_value"],
        "impressions": arms["control"]["impressions"] + arms["optimized"]["impressions"],
        "models": result["creatives"]["models"],
        "generated_admitted": result["creatives"]["generated_admitted"],
        "generated_share": result["creatives"]["generated_share_optimized"],
        "segments_outside": len(outside),
        "segments_generated_wins": len(wins),
        "segments_far": len(far),
        "segments_far_wins": sum(b["generated_beats_human"] for b in far),
        "per_segment": [
            (
                b["segment"],
                b["best_human"]["true_ctr"],
                b["best_generated"]["true_ctr"] if b["best_generated"] else None,
            )
            for b in outside
        ],
        "wall_s": result["wall_s"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=150.0, help="seconds of traffic")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    heads = []
    for i in range(args.repeats):
        h = headline(run_once(args.budget, args.seed + i))
        heads.append(h)
        print(
            f"run {i + 1}: control CTR {h['control_ctr']:.2%}, optimized CTR "
            f"{h['optimized_ctr']:.2%} -> ratio {h['ctr_ratio']:.2f} (true-CTR ratio "
            f"{h['true_ctr_ratio']:.2f}); lift 95% [{h['lift_low']:+.0%}, {h['lift_high']:+.0%}]"
            f"; P(beats) {h['p_beats']:.3f}; SRM p {h['srm_p']:.2g}; {h['impressions']} "
            f"impressions; {h['models']} models; {h['generated_admitted']} generated admitted, "
            f"{h['generated_share']:.1%} of optimized traffic; generated beats best human in "
            f"{h['segments_far_wins']}/{h['segments_far']} segments with the optimum far outside "
            f"the catalog (all: {h['segments_generated_wins']}/{h['segments_outside']}); "
            f"{h['wall_s']:.0f}s wall"
        )
        for seg, human, gen in h["per_segment"]:
            gen_s = f"{gen:.2%}" if gen is not None else "none"
            print(f"    {seg}: best human {human:.2%}, best generated {gen_s}")
    ratio = statistics.median(h["ctr_ratio"] for h in heads)
    wins = statistics.median(h["segments_far_wins"] / max(1, h["segments_far"]) for h in heads)
    print(
        f"median optimized/control CTR ratio {ratio:.2f} (target >= 1.3): "
        f"{'PASS' if ratio >= 1.3 else 'FAIL'}"
    )
    print(
        f"median share of segments with the optimum far outside the catalog (>= {FAR}x the best "
        f"human) where the best generated creative beats the best human one {wins:.0%} "
        f"(target 100%): {'PASS' if wins >= 1 else 'FAIL'}"
    )


if __name__ == "__main__":
    main()
