"""Trainer benchmark: time to a stated quality on 50k rewards, and ONNX vs torch-eager
generation (latency at batch 1, throughput at batch 1024).

    python bench/bench_trainer.py [--rows 50000] [--profile small|full]   (default: small)

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

from services.trainer.buffer import RewardRow
from services.trainer.export import onnx_session
from services.trainer.publisher import build_model
from services.trainer.quality import auc
from services.trainer.space import CreativeSpace
from services.trainer.synthetic import (
    GroundTruth,
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
    campaign, catalog, truth = synthetic_campaign(), synthetic_catalog(), GroundTruth()
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
    args = parser.parse_args()
    print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}")
    built = bench_training(args.rows, args.profile)
    bench_export(built)
    bench_generation(built, torch.device("cpu"))
    if pick_device("auto").type == "cuda":
        bench_generation(built, torch.device("cuda"))
    else:
        print("no CUDA GPU on this machine: CPU numbers only")


if __name__ == "__main__":
    main()
