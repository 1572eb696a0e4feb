"""Trainer benchmark: time to a stated quality on 50k rewards, and ONNX vs torch-eager
generation (latency at batch 1, throughput at batch 1024).

    python bench/bench_trainer.py [--rows 50000] [--profile small|full]   (default: small)
    python bench/bench_trainer.py --scenario bend [--rows 40000] [--seeds 3]

With --scenario (a simulator scenario: `bend` has effects that peak mid-range and a best hue at
the wrap of the hue circle), the reward model's numeric representation is measured instead:
the same logged data (uniformly random creatives, clicks from the scenario's ground truth)
trains today's model (`reward_bends=0`: numeric columns enter linearly) and the bending one
(the default), same seed; per segment, the generator's 256 candidates are ranked by the
reward model and the top `max_generated` (the admitted ones) are scored by their true CTR
against the uniform pool (the mean true CTR of uniformly random creatives). Bar: top admitted
>= 3x the uniform pool in every segment, training time <= 2x today's.

Quality bar (stated before the run): in every segment, generated creatives' true CTR (the
synthetic ground truth) beats the catalog average, and the reward model's held-out AUC is at
least 95 % of the oracle's (the ground truth's own AUC on the same kind of data).
Baselines in the same run: the catalog (for quality) and torch eager (for generation). Both
runtimes use one intra-op thread. Pure CPU; no broker needed. Where CUDA is available, the
generation numbers are repeated for torch on CUDA.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.common.creative_space import CreativeSpace
from services.trainer.buffer import RewardRow
from services.trainer.export import onnx_session
from services.trainer.pipeline import build_model
from services.trainer.quality import auc
from services.trainer.synthetic import (
    SyntheticTruth,
    synthetic_campaign,
    synthetic_catalog,
    synthetic_rewards,
)
from services.trainer.train import TrainConfig, pick_device


def _feeds(meta: dict, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    seg = np.eye(len(meta["segments"]), dtype=np.float32)[rng.integers(0, len(meta["segments"]), n)]
    u = rng.uniform(1e-9, 1, (n, meta["gumbel_dim"]))
    return {
        "noise": rng.standard_normal((n, meta["noise_dim"])).astype(np.float32),
        "segment": seg,
        "gumbel": (-np.log(-np.log(u))).astype(np.float32),
    }


def bench_training(rows: int, profile: str):
    campaign, catalog, truth = synthetic_campaign(), synthetic_catalog(), SyntheticTruth()
    records = synthetic_rewards(catalog, rows, truth)
    reward_rows = [RewardRow.from_record(r) for r in records]
    creatives = {c["creative_id"]: c for c in catalog}
    cfg = TrainConfig.small() if profile == "small" else TrainConfig()
    started, cpu = time.perf_counter(), time.process_time()
    built = build_model(campaign, creatives, reward_rows, cfg, seed=7)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    m = built.metrics
    print(
        f"training: {rows} rewards, profile {profile}, CPU: {seconds:.1f} s wall, {cpu:.1f} s "
        "CPU time, end to end (train + export + parity + quality)"
    )
    # quality vs the catalog baseline, per segment, with the ground truth
    space = CreativeSpace.from_json(built.metadata["encoding"])
    gen = onnx_session(built.exported.generator)
    rng = np.random.default_rng(5)
    ok = True
    for i, seg in enumerate(built.metadata["segments"]):
        feeds = _feeds(built.metadata, 1000, rng)
        feeds["segment"] = np.zeros_like(feeds["segment"])
        feeds["segment"][:, i] = 1
        g = np.mean([truth.ctr(seg, a) for a in space.decode_many(gen.run(None, feeds)[0])])
        c = np.array([truth.ctr(seg, x["attributes"]) for x in catalog])
        ok &= g > c.mean()
        print(
            f"  {seg:<28} generated CTR {g:.3f}  catalog avg {c.mean():.3f}  "
            f"(x{g / c.mean():.2f})  best catalog {c.max():.3f}"
        )
    fresh = synthetic_rewards(catalog, 20000, truth, seed=99)
    oracle = auc(
        np.array([r["reward"] for r in fresh]),
        np.array(
            [truth.ctr(r["segment"], creatives[r["creative_id"]]["attributes"]) for r in fresh]
        ),
    )
    ok &= m["reward_auc"] >= 0.95 * oracle
    print(
        f"  reward model: held-out AUC {m['reward_auc']:.3f} (oracle {oracle:.3f}), log-loss "
        f"{m['reward_logloss']:.3f}, ECE {m['reward_ece']:.4f}"
    )
    print(
        f"  quality: fidelity {m['fidelity_mean']:.3f}, detection AUC {m['detection_auc']:.3f}, "
        f"diversity {m['diversity']:.3f}, condition fidelity {m['condition_fidelity']:.3f}"
    )
    print(f"  quality bar met: {bool(ok)}")
    return built


def _random_creative(scenario, rng: np.random.Generator) -> dict:
    out: dict = {}
    for a in scenario.campaign.attributes:
        if a.kind == "categorical":
            out[a.name] = str(rng.choice(a.values))
        elif a.kind == "numeric":
            out[a.name] = float(rng.uniform(a.min, a.max))
        else:
            out[a.name] = "#" + "".join(f"{int(v):02x}" for v in rng.integers(0, 256, 3))
    return out


def bench_bends(name: str, rows: int, profile: str, seeds: int) -> None:
    from services.common.campaign import campaign_record
    from services.simulator.groundtruth import GroundTruth as SimTruth
    from services.simulator.scenario import load_scenario

    scenario = load_scenario(name)
    truth = SimTruth(scenario)
    campaign = campaign_record(scenario.campaign, 1)
    cid = campaign["campaign_id"]
    rng = np.random.default_rng(11)
    pool = [_random_creative(scenario, rng) for _ in range(2000)]
    creatives = {
        f"r{i}": {"creative_id": f"r{i}", "campaign_id": cid, "attributes": a}
        for i, a in enumerate(pool)
    }
    names = [s.name for s in scenario.audience.segments]
    keys = {scenario.segment_key(s): s.name for s in scenario.audience.segments}
    seg_idx = rng.choice(len(names), size=rows, p=scenario.shares())
    served = rng.integers(0, len(pool), rows)
    reward_rows = []
    for i, (s, c) in enumerate(zip(seg_idx, served, strict=True)):
        seg = scenario.segment_key(scenario.audience.segments[s])
        clicked = rng.random() < truth.p_click(names[s], pool[c])
        reward_rows.append(RewardRow(f"d{i}", seg, f"r{c}", 1 / len(pool), float(clicked), i))
    uniform = {
        n: np.mean([truth.p_click(n, _random_creative(scenario, rng)) for _ in range(5000)])
        for n in names
    }
    base = TrainConfig.small() if profile == "small" else TrainConfig()
    k = scenario.campaign.max_generated
    print(
        f"scenario {name}: {rows} rewards over {len(pool)} uniformly random creatives, "
        f"profile {profile}, top {k} of 256 generated candidates by the reward model"
    )
    results: dict[str, list] = {"today (bends 0)": [], "bending (default)": []}
    build_model(campaign, creatives, reward_rows[:2000], base, seed=0)  # warm-up, untimed
    for seed in range(1, seeds + 1):
        for label, cfg in (
            ("today (bends 0)", base.with_overrides(reward_bends=0)),
            ("bending (default)", base),
        ):
            started = time.perf_counter()
            built = build_model(campaign, creatives, reward_rows, cfg, seed=seed)
            seconds = time.perf_counter() - started
            space = CreativeSpace.from_json(built.metadata["encoding"])
            gen = onnx_session(built.exported.generator)
            rm = onnx_session(built.exported.reward_model)
            ratios = {}
            gen_rng = np.random.default_rng(seed)
            for i, seg in enumerate(built.metadata["segments"]):
                feeds = _feeds(built.metadata, 256, gen_rng)
                feeds["segment"] = np.zeros_like(feeds["segment"])
                feeds["segment"][:, i] = 1
                cand = gen.run(None, feeds)[0]
                score = rm.run(None, {"segment": feeds["segment"], "creative": cand})[0][:, 0]
                top = [space.decode(cand[j]) for j in np.argsort(-score)[:k]]
                true = np.mean([truth.p_click(keys[seg], a) for a in top])
                best = max(truth.p_click(keys[seg], a) for a in space.decode_many(cand))
                ratios[keys[seg]] = (true / uniform[keys[seg]], best / uniform[keys[seg]])
            results[label].append((seconds, ratios, built.metrics["reward_auc"]))
            worst = min(r[0] for r in ratios.values())
            print(
                f"  seed {seed} {label:18s} {seconds:6.1f} s  "
                + "  ".join(
                    f"{s}: top x{r[0]:.1f} (best of 256 x{r[1]:.1f})" for s, r in ratios.items()
                )
                + f"  worst x{worst:.1f}  AUC {built.metrics['reward_auc']:.3f}"
            )
    t_today = statistics.median(x[0] for x in results["today (bends 0)"])
    t_new = statistics.median(x[0] for x in results["bending (default)"])
    print("medians over seeds (top admitted / uniform pool):")
    ok = t_new <= 2 * t_today
    for label, runs in results.items():
        per = {s: statistics.median(r[1][s][0] for r in runs) for s in names}
        worst = min(min(r[1][s][0] for s in names) for r in runs)
        if label.startswith("bending"):
            ok &= worst >= 3.0
        print(
            f"  {label:18s} "
            + "  ".join(f"{s} x{v:.1f}" for s, v in per.items())
            + f"  (worst segment of any seed x{worst:.1f})  "
            f"time {statistics.median(r[0] for r in runs):.1f} s"
        )
    print(f"  training time bending / today: {t_new / t_today:.2f}")
    print(f"  bar met (every segment >= 3x in every seed, time <= 2x): {bool(ok)}")


def bench_export(built) -> None:
    from services.trainer.export import export_and_check

    times = []
    for _ in range(3):
        started = time.perf_counter()
        export_and_check(built.generator, built.reward_model)
        times.append(time.perf_counter() - started)
    print(f"ONNX export of both models + parity check: median {statistics.median(times):.2f} s")


def _median_latency(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_generation(built, device: torch.device) -> None:
    torch.set_num_threads(1)
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(
        built.exported.generator, opts, providers=["CPUExecutionProvider"]
    )
    gen = built.generator.to(device).eval()
    rng = np.random.default_rng(0)
    for batch, repeats in ((1, 2000), (1024, 60)):
        feeds = _feeds(built.metadata, batch, rng)
        tensors = [torch.from_numpy(feeds[k]).to(device) for k in ("noise", "segment", "gumbel")]

        def run_torch(tensors: list[torch.Tensor] = tensors) -> None:
            with torch.inference_mode():
                gen(*tensors)
                if device.type == "cuda":
                    torch.cuda.synchronize()

        def run_onnx(feeds: dict[str, np.ndarray] = feeds) -> None:
            session.run(None, feeds)

        for fn in (run_torch, run_onnx):  # warm up
            for _ in range(20):
                fn()
        t_torch = statistics.median(_median_latency(run_torch, repeats // 5) for _ in range(5))
        t_onnx = statistics.median(_median_latency(run_onnx, repeats // 5) for _ in range(5))
        if batch == 1:
            print(
                f"generation latency, batch 1: torch eager ({device.type}) {t_torch * 1e6:.0f} "
                f"us, ONNX Runtime (CPU) {t_onnx * 1e6:.0f} us -> ONNX x{t_torch / t_onnx:.1f}"
            )
        else:
            print(
                f"generation throughput, batch 1024: torch eager ({device.type}) "
                f"{batch / t_torch:,.0f} rows/s, ONNX Runtime (CPU) {batch / t_onnx:,.0f} "
                f"rows/s -> ONNX x{t_torch / t_onnx:.1f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--profile", choices=["full", "small"], default="small")
    parser.add_argument("--scenario", default=None, help="measure the reward model (`bend`)")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}")
    if args.scenario:
        torch.set_num_threads(1)
        bench_bends(args.scenario, min(args.rows, 40_000), args.profile, args.seeds)
        return
    built = bench_training(args.rows, args.profile)
    bench_export(built)
    bench_generation(built, torch.device("cpu"))
    if pick_device("auto").type == "cuda":
        bench_generation(built, torch.device("cuda"))
    else:
        print("no CUDA GPU on this machine: CPU numbers only")


if __name__ == "__main__":
    main()
