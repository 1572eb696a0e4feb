"""Benchmark: does generation pay for itself? Full loop vs catalog bandit vs control, on a grid.

Each cell runs `admuse demo` on the demo scenario (real broker, the four services, the
simulator), its click-through rates moved to a level (every base logit shifted so the best
human creative, averaged over the traffic, clicks at about ``level``), at a traffic rate and a
seed. The three policies share each run (control / catalog bandit / full loop, per user), so the
baseline — the catalog bandit — is measured in the same run as the full loop. Per cell:

- true CTR of each policy with its 95 % interval, regret per impression with its interval;
- the full loop's lift over the catalog bandit: on observed clicks (what an advertiser sees)
  with its 95 % interval, and on true CTR (simulator only) with its interval;
- model versions published, generated creatives admitted, promoted and retired;
- the verdict: ``not worse`` when the interval of the lift includes or exceeds 0, ``beats``
  when it lies above 0, ``WORSE`` when below;
- then each cell across its seeds (`over_seeds`): the mean lift with its interval over the
  seeds, the verdict on that, and how many single runs were behind by their own intervals.
  That reading needs several seeds (with two, the t interval is ±12.7 standard errors): the
  grid in bench/RESULTS.md runs eight per cell on the harness (`--virtual --seeds 0 … 7`).

    python bench/bench_generation.py                       # the whole grid (12 runs)
    python bench/bench_generation.py --cells 0.02x100 0.1x100 --seeds 0 --budget 240
    python bench/bench_generation.py --summarize a.jsonl b.jsonl     # tables of runs made apart

Broker from ADMUSE_KAFKA_BOOTSTRAP_SERVERS (default 127.0.0.1:9092); each run uses its own
topic prefix and run folder under .run/bench-generation-*/. Results go to stdout as a markdown
table and, one JSON line per cell, to `--out` (default .run/bench-generation.jsonl).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from services.analysis.stats import replicate_interval  # noqa: E402
from services.simulator.groundtruth import GroundTruth  # noqa: E402
from services.simulator.scenario import parse_scenario, scenario_path  # noqa: E402


def shifted(raw: dict[str, Any], shift: float) -> dict[str, Any]:
    out = json.loads(json.dumps(raw))
    truth = out["truth"]
    truth["base_logit"] = truth.get("base_logit", -3.0) + shift
    for seg in truth.get("segments", {}).values():
        if seg.get("base_logit") is not None:
            seg["base_logit"] += shift
    return out


def best_human_ctr(raw: dict[str, Any]) -> float:
    """The best catalog creative's true CTR, averaged over the segments by traffic share."""
    scenario = parse_scenario(raw)
    truth = GroundTruth(scenario)
    total = sum(s.share for s in scenario.audience.segments)
    return sum(
        s.share / total * truth.best_catalog(s.name).p_click for s in scenario.audience.segments
    )


def scenario_at(level: float, base: str = "demo") -> tuple[dict[str, Any], float]:
    """The scenario with its logits shifted so the best human creative clicks at ~``level``."""
    raw = yaml.safe_load(scenario_path(base).read_text())
    lo, hi = -10.0, 10.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if best_human_ctr(shifted(raw, mid)) < level:
            lo = mid
        else:
            hi = mid
    out = shifted(raw, (lo + hi) / 2)
    return out, best_human_ctr(out)


def run_cell(level: float, rate: float, seed: int, budget: float, timeout: float) -> dict:
    raw, achieved = scenario_at(level)
    tag = f"bench-generation-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:4]}"
    run = REPO / ".run" / tag
    run.mkdir(parents=True, exist_ok=True)
    path = run / "scenario.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    cmd = [
        sys.executable, "-c", "from services.cli import app; app()", "demo",
        "--scenario", str(path), "--rate", str(rate), "--budget", str(budget),
        "--seed", str(seed), "--run-dir", str(run), "--topic-prefix", f"{tag}.", "--no-live",
    ]  # fmt: skip
    env = {**os.environ, "COLUMNS": "160"}
    env.setdefault("ADMUSE_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    t0 = time.monotonic()
    proc = subprocess.run(
        cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )
    wall = time.monotonic() - t0
    cell = {"level": level, "best_human_ctr": achieved, "rate": rate, "seed": seed,
            "budget_s": budget, "wall_s": round(wall, 1), "run": str(run),
            "exit": proc.returncode}  # fmt: skip
    result_file = run / "result.json"
    if proc.returncode != 0 or not result_file.exists():
        cell["error"] = (proc.stdout[-2000:] + proc.stderr[-2000:]).strip()
        return cell
    return {**cell, **summarize(json.loads(result_file.read_text()))}


def run_virtual(level: float, rate: float, seed: int, budget: float, env: list[str]) -> dict:
    """One cell on simulated time (`virtual_loop`): INFERENCE_X=v / TRAINER_X=v settings."""
    from bench.virtual_loop import Cell
    from bench.virtual_loop import run_cell as run_virtual_cell

    raw, achieved = scenario_at(level)
    pairs = dict(item.split("=", 1) for item in env)
    inf = {k.removeprefix("INFERENCE_"): v for k, v in pairs.items() if k.startswith("INFERENCE_")}
    trn = {k.removeprefix("TRAINER_"): v for k, v in pairs.items() if k.startswith("TRAINER_")}
    t0 = time.monotonic()
    out = run_virtual_cell(Cell(raw, rate, seed, budget, inference_env=inf, trainer_env=trn))
    return {"level": level, "best_human_ctr": achieved, "rate": rate, "seed": seed,
            "budget_s": budget, "wall_s": round(time.monotonic() - t0, 1), "virtual": True,
            "env": pairs, **out}  # fmt: skip


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    arms, gen, cr = result["arms"], result.get("generation"), result["creatives"]
    out: dict[str, Any] = {"requests": result["requests"], "failed": result["failed"]}
    for a in ("control", "catalog", "optimized"):
        s = arms[a]
        out[a] = {k: s.get(k) for k in (
            "impressions", "clicks", "true_ctr", "true_ctr_low", "true_ctr_high",
            "regret_per_impression", "regret_per_impression_low", "regret_per_impression_high",
        )}  # fmt: skip
    out["generation"] = gen
    out["models"] = cr["models"]
    out["admitted"] = cr["generated_admitted"]
    out["promoted"] = cr.get("promoted")
    out["retired"] = cr["retired"]
    out["generated_share"] = cr["generated_share_optimized"]
    if gen:
        out["verdict"] = verdict(gen["lift_low"], gen["lift_high"])
        out["verdict_true"] = verdict(
            gen["true_ctr_difference_low"], gen["true_ctr_difference_high"]
        )
        out["verdict_stratified"] = verdict(
            gen.get("true_ctr_difference_stratified_low", math.nan),
            gen.get("true_ctr_difference_stratified_high", math.nan),
        )
    return out


def verdict(low: float, high: float) -> str:
    """``beats`` when the interval of the full loop's lift lies above 0, ``WORSE`` when below,
    ``not worse`` when it holds 0 (or is undefined)."""
    return "beats" if low > 0 else ("WORSE" if high < 0 else "not worse")


def over_seeds(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each cell (level × rate × seconds of traffic × settings, harness or stack) across its
    seeds.

    A run's own intervals cover the noise inside it, given how its verdicts went; whether a
    handful of challengers judged on a few dozen impressions each found a winner is luck of
    that run, which only other runs show. So the cell's question (does generation pay at this
    CTR and traffic?) is answered across seeds: the mean of the runs' per-segment true-CTR
    differences and of their lifts on clicks, each with its Student-t interval over the seeds
    (`services.analysis.stats.replicate_interval`), and the verdict on that. How many single
    runs were behind by their own intervals is kept beside it: one run's loss is what an
    advertiser can meet. A seed run more than once counts once (its last run)."""
    groups: dict[tuple[float, float, float, str, bool], dict[int, dict[str, Any]]] = {}
    for c in cells:
        env = json.dumps(c.get("env") or {}, sort_keys=True)
        key = (c["level"], c["rate"], c.get("budget_s", math.nan), env, bool(c.get("virtual")))
        groups.setdefault(key, {})[c["seed"]] = c
    out = []
    for (level, rate, budget, env, virtual), by_seed in sorted(groups.items()):
        runs = [by_seed[s] for s in sorted(by_seed)]
        ok = [c for c in runs if "error" not in c and c.get("generation")]
        gens = [c["generation"] for c in ok]
        truth = replicate_interval([_number(g.get("true_ctr_difference_stratified")) for g in gens])
        lift = replicate_interval([_number(g.get("lift")) for g in gens])
        out.append({
            "level": level, "rate": rate, "budget_s": budget, "env": json.loads(env),
            "virtual": virtual,
            "seeds": [c["seed"] for c in ok], "failed": len(runs) - len(ok),
            "truth": truth, "lift": lift,
            "verdict_truth": verdict(truth[1], truth[2]),
            "verdict_clicks": verdict(lift[1], lift[2]),
            "runs_worse_clicks": sum(c.get("verdict") == "WORSE" for c in ok),
            "runs_worse_truth": sum(c.get("verdict_stratified") == "WORSE" for c in ok),
            "runs_beat_truth": sum(c.get("verdict_stratified") == "beats" for c in ok),
            "promoted": sum(c.get("promoted") or 0 for c in ok),
            "admitted": sum(c.get("admitted") or 0 for c in ok),
        })  # fmt: skip
    return out


def _number(x: Any) -> float:
    return float(x) if isinstance(x, int | float) else math.nan


def markdown_over_seeds(summary: list[dict[str, Any]]) -> str:
    rows = [
        "| CTR level | req/s | s of traffic | seeds | per-segment true diff pp, mean [95 % over "
        "seeds] | lift on clicks, mean [95 % over seeds] | verdict over seeds (clicks / per "
        "segment) | runs beating / behind by their own per-segment interval | runs behind on "
        "clicks | admitted / promoted (all runs) |\n|" + "---|" * 10
    ]
    for s in summary:
        (tm, tl, th), (lm, ll, lh) = s["truth"], s["lift"]
        env = f" ({' '.join(f'{k}={v}' for k, v in s['env'].items())})" if s["env"] else ""
        env += "" if s["virtual"] else " (the stack)"
        failed = f", {s['failed']} failed" if s["failed"] else ""
        rows.append(
            f"| {_pct(s['level'], 1)}{env} | {s['rate']:g} | {s['budget_s']:g} | "
            f"{len(s['seeds'])}{failed} | "
            f"{100 * tm:+.3f} [{100 * tl:+.3f}, {100 * th:+.3f}] | "
            f"{100 * lm:+.1f} % [{100 * ll:+.1f}, {100 * lh:+.1f}] | "
            f"{s['verdict_clicks']} / {s['verdict_truth']} | "
            f"{s['runs_beat_truth']} / {s['runs_worse_truth']} | {s['runs_worse_clicks']} | "
            f"{s['admitted']} / {s['promoted']} |"
        )
    return "\n".join(rows)


def _pct(x: float | None, d: int = 2) -> str:
    return "-" if x is None else f"{100 * x:.{d}f} %"


def _iv(s: dict[str, Any], key: str, scale: float = 100, d: int = 2) -> str:
    v, lo, hi = s.get(key), s.get(f"{key}_low"), s.get(f"{key}_high")
    if v is None:
        return "-"
    return f"{scale * v:.{d}f} [{scale * lo:.{d}f}, {scale * hi:.{d}f}]"


def markdown(cells: list[dict[str, Any]]) -> str:
    head = (
        "| CTR level (best human) | req/s | seed | full loop true CTR % [95 %] | catalog bandit "
        "| control | regret/imp ×100: full / catalog / control | lift full vs catalog, "
        "clicks [95 %] | true CTR diff pp [95 %] | per-segment true diff pp [95 %] | verdict "
        "(clicks / true / per segment) | models | admitted / promoted / retired | challenger "
        "share of full loop |\n|" + "---|" * 14
    )
    rows = [head]
    for c in cells:
        if "error" in c:
            rows.append(
                f"| {_pct(c['level'], 1)} | {c['rate']:g} | {c['seed']} | failed "
                f"(exit {c['exit']}) |" + " |" * 10
            )
            continue
        g = c.get("generation") or {}
        o, k, n = c["optimized"], c["catalog"], c["control"]
        lift = (
            f"{100 * g['lift']:+.1f} % [{100 * g['lift_low']:+.1f}, {100 * g['lift_high']:+.1f}]"
            if g
            else "-"
        )
        diff = (
            f"{100 * g['true_ctr_difference']:+.2f} [{100 * g['true_ctr_difference_low']:+.2f}, "
            f"{100 * g['true_ctr_difference_high']:+.2f}]"
            if g
            else "-"
        )
        sdiff = (
            f"{100 * g['true_ctr_difference_stratified']:+.2f} "
            f"[{100 * g['true_ctr_difference_stratified_low']:+.2f}, "
            f"{100 * g['true_ctr_difference_stratified_high']:+.2f}]"
            if g and g.get("true_ctr_difference_stratified") is not None
            else "-"
        )
        share = c.get("challenger_share")
        regret = " / ".join(f"{100 * s['regret_per_impression']:.2f}" for s in (o, k, n))
        rows.append(
            f"| {_pct(c['level'], 1)} ({_pct(c['best_human_ctr'])}) | {c['rate']:g} | "
            f"{c['seed']} | {_iv(o, 'true_ctr')} | {_iv(k, 'true_ctr')} | "
            f"{_iv(n, 'true_ctr')} | {regret} | {lift} | {diff} | {sdiff} | "
            f"{c.get('verdict', '-')} / {c.get('verdict_true', '-')} / "
            f"{c.get('verdict_stratified', '-')} | {c['models']} | "
            f"{c['admitted']} / {c.get('promoted', '-')} / {c['retired']} | "
            f"{'-' if share is None else f'{100 * share:.1f} %'} |"
        )
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--levels", type=float, nargs="+", default=[0.005, 0.02, 0.10])
    ap.add_argument("--rates", type=float, nargs="+", default=[25.0, 100.0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument(
        "--cells", nargs="*", default=None, help="LEVELxRATE pairs to run (default: the grid)"
    )
    ap.add_argument("--budget", type=float, default=240.0, help="seconds of traffic per run")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per run, all in")
    ap.add_argument("--out", type=Path, default=REPO / ".run" / "bench-generation.jsonl")
    ap.add_argument(
        "--virtual",
        action="store_true",
        help="simulated time, no Kafka (bench/virtual_loop.py) instead of `admuse demo`",
    )
    ap.add_argument("--env", nargs="*", default=[], help="KEY=VALUE service settings (virtual)")
    ap.add_argument(
        "--summarize",
        type=Path,
        nargs="+",
        default=None,
        help="run nothing: the tables of the cells in these --out files (runs made apart)",
    )
    args = ap.parse_args()
    if args.summarize:
        done = [json.loads(line) for f in args.summarize for line in f.open() if line.strip()]
        print(markdown(done))
        print()
        print(markdown_over_seeds(over_seeds(done)))
        return
    pairs = (
        [(float(a), float(b)) for a, b in (c.split("x") for c in args.cells)]
        if args.cells
        else [(lv, r) for lv in args.levels for r in args.rates]
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cells = []
    load = os.getloadavg()
    for level, rate in pairs:
        for seed in args.seeds:
            print(f"cell CTR {level:.1%} × {rate:g} req/s × seed {seed} ...", flush=True)
            if args.virtual:
                cell = run_virtual(level, rate, seed, args.budget, args.env)
            else:
                cell = run_cell(level, rate, seed, args.budget, args.timeout)
            cell["loadavg_before"] = load
            load = os.getloadavg()
            cells.append(cell)
            with args.out.open("a", encoding="utf-8") as f:
                f.write(json.dumps(cell) + "\n")
            print(markdown([cell]).splitlines()[-1], flush=True)
    print()
    print(markdown(cells))
    print()
    print(markdown_over_seeds(over_seeds(cells)))
    failed = [c for c in cells if "error" in c]
    worse = [c for c in cells if c.get("verdict") == "WORSE"]
    print(f"\n{len(cells)} cells, {len(failed)} failed, {len(worse)} with the full loop worse "
          f"than the catalog bandit beyond noise")  # fmt: skip
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
