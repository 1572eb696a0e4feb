"""In-process decide latency of the inference core (no Kafka, no HTTP).

One decide = pseudonymize the user id, compute the segment, assign the holdout arm, and (on
the optimized arm) let the Thompson bandit choose among the segment's 20 live creatives,
returning the logged propensity. Baseline, same run: the same steps with a uniform random
choice for everyone (the cheapest policy there is).

Scenarios, 8 segments x 20 creatives:
- warm: posteriors unchanged, every choice hits the propensity cache (REQUESTS decisions back
  to back, medians over REPEATS);
- inline refresh: requests paced at 500/s, every segment's posteriors change every 250 ms and
  the propensities are recomputed on the request path (PACED_REQUESTS, PACED_REPEATS);
- background refresh: the same, but a worker thread computes the new snapshots and swaps
  them in; requests use the previous posteriors (cache hits) until then.
Then the CPU time of one propensity computation (cache miss) by quadrature and by Monte Carlo
(2000 draws), with the L1 error of each against a dense 400-quantile reference. Latencies are
wall-clock (they include waiting for a core on a busy machine); compute costs are CPU time.

Run: python bench/bench_inference_core.py  (no broker needed)
"""

from __future__ import annotations

import os
import queue
import statistics
import threading
import time
from collections.abc import Callable

import numpy as np
from scipy import special

from services.common.privacy import pseudonymize
from services.common.segment import segment_of
from services.inference.bandit import (
    Arm,
    ThompsonBandit,
    holdout_arm,
    thompson_probabilities,
    uniform_choice,
)

REPEATS = int(os.environ.get("REPEATS", "5"))
REQUESTS = int(os.environ.get("REQUESTS", "20000"))
N_ARMS = 20
RATE = 500.0  # requests per second in the refresh scenarios
REFRESH_EVERY = 125  # requests: posteriors refreshed every 250 ms at 500 req/s
PACED_REQUESTS = int(os.environ.get("PACED_REQUESTS", "5000"))
PACED_REPEATS = int(os.environ.get("PACED_REPEATS", "3"))
COUNTRIES = ["DE", "FR", "IT", "ES"]
DEVICES = ["mobile", "desktop"]
SECRET = b"bench-secret"
KEYS = ["country", "device"]


def _arms(rng: np.random.Generator, k: int = N_ARMS) -> list[Arm]:
    n = rng.integers(200, 5000, k)
    ctr = rng.uniform(0.01, 0.06, k)
    return [Arm(f"c{i}", 1 + ctr[i] * n[i], 1 + (1 - ctr[i]) * n[i]) for i in range(k)]


def _segments() -> list[str]:
    return [segment_of(KEYS, {"country": c, "device": d}) for c in COUNTRIES for d in DEVICES]


def _run(policy: str, refresh: str | None, seed: int) -> np.ndarray:
    """``refresh``: None (posteriors fixed, requests back to back), "inline" (recomputed on
    the request that first sees them) or "background" (a worker thread computes the new
    snapshot; requests keep the previous posteriors until it is ready); with a refresh,
    requests are paced at RATE per second."""
    rng = np.random.default_rng(seed)
    segments = _segments()
    pools = {s: _arms(rng) for s in segments}
    bandit = ThompsonBandit(0.02, rng=np.random.default_rng(seed + 1))
    users = [f"user-{i}" for i in range(5000)]
    contexts = [{"country": COUNTRIES[i % 4], "device": DEVICES[i % 2]} for i in range(5000)]
    jobs: queue.Queue[dict[str, list[Arm]] | None] = queue.Queue()

    def worker() -> None:
        while (fresh := jobs.get()) is not None:
            for s, arms in fresh.items():
                bandit.snapshot(arms)
                pools[s] = arms

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    n = PACED_REQUESTS if refresh else REQUESTS
    laps = np.empty(n)
    start = time.perf_counter()
    for r in range(n):
        if refresh:
            time.sleep(max(0.0, start + r / RATE - time.perf_counter()))
        if refresh and r % REFRESH_EVERY == 0:
            # Rewards arrived: every posterior moved a little.
            fresh = {
                s: [Arm(a.creative_id, a.alpha + 1, a.beta + 20) for a in pools[s]]
                for s in segments
            }
            if refresh == "inline":
                pools.update(fresh)
            else:
                jobs.put(fresh)
        u = r % len(users)
        t0 = time.perf_counter()
        pseudonym = pseudonymize(SECRET, users[u])
        segment = segment_of(KEYS, contexts[u])
        if policy == "uniform":
            index, propensity = uniform_choice(N_ARMS, rng)
        elif holdout_arm(pseudonym, "spring", 0.1) == "control":
            index, propensity = uniform_choice(N_ARMS, rng)
        else:
            index, propensity = bandit.choose(pools[segment])
        laps[r] = time.perf_counter() - t0
        assert 0 < propensity <= 1 and 0 <= index < N_ARMS
    jobs.put(None)
    thread.join()
    return laps


def _pct(laps: np.ndarray) -> tuple[float, float]:
    return float(np.percentile(laps, 50) * 1e6), float(np.percentile(laps, 99) * 1e6)


def _median_over(
    fn: Callable[[int], tuple[float, float]], repeats: int = REPEATS
) -> tuple[float, float]:
    runs = [fn(seed) for seed in range(repeats)]
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def _compute_cost(k: int) -> dict[str, float]:
    quad_t, mc_t, quad_err, mc_err, est = [], [], [], [], []
    for seed in range(REPEATS):
        arms = _arms(np.random.default_rng(100 + seed), k)
        a = np.array([x.alpha for x in arms])
        b = np.array([x.beta for x in arms])
        t0 = time.process_time()
        p, error = thompson_probabilities(arms)
        quad_t.append(time.process_time() - t0)
        mc = ThompsonBandit(0.0, 2000, np.random.default_rng(seed), method="monte_carlo")
        t0 = time.process_time()
        q = mc.snapshot(arms).thompson
        mc_t.append(time.process_time() - t0)
        ref = _reference(a, b)
        quad_err.append(np.abs(p - ref).sum())
        mc_err.append(np.abs(q - ref).sum())
        est.append(error)
    return {
        "quad_ms": statistics.median(quad_t) * 1e3,
        "mc_ms": statistics.median(mc_t) * 1e3,
        "quad_l1": statistics.median(quad_err),
        "quad_est": statistics.median(est),
        "mc_l1": statistics.median(mc_err),
    }


def _reference(a: np.ndarray, b: np.ndarray, levels: int = 400) -> np.ndarray:
    """P(best) on a dense grid (every arm's 400 quantiles, halved), CDFs evaluated everywhere."""
    q = special.betaincinv(a[:, None], b[:, None], ((np.arange(levels) + 0.5) / levels)[None, :])
    x = np.unique(np.concatenate([[0.0, 1.0], q.ravel()]))
    x = np.sort(np.concatenate([x, 0.5 * (x[:-1] + x[1:])]))
    cdf = special.betainc(a[:, None], b[:, None], x[None, :])
    ones = np.ones((1, x.size))
    others = np.cumprod(np.vstack([ones, cdf[:-1]]), axis=0)
    others *= np.cumprod(np.vstack([ones, cdf[:0:-1]]), axis=0)[::-1]
    p = (np.diff(cdf, axis=1) * (others[:, :-1] + others[:, 1:]) * 0.5).sum(axis=1)
    return p / p.sum()


def main() -> None:
    print(f"in-process decide, {len(_segments())} segments x {N_ARMS} creatives, µs, medians "
          f"of {REPEATS} repeats x {REQUESTS} (refresh: {PACED_REPEATS} x {PACED_REQUESTS} "
          f"at {RATE:.0f}/s)")  # fmt: skip
    base = _median_over(lambda s: _pct(_run("uniform", None, s)))
    warm = _median_over(lambda s: _pct(_run("thompson", None, s)))
    inline = _median_over(lambda s: _pct(_run("thompson", "inline", s)), PACED_REPEATS)
    background = _median_over(lambda s: _pct(_run("thompson", "background", s)), PACED_REPEATS)
    print(f"  {'baseline uniform':28s} p50 {base[0]:7.1f}  p99 {base[1]:7.1f}")
    for name, (p50, p99) in (
        ("thompson, cache warm", warm),
        ("thompson, inline refresh", inline),
        ("thompson, background refresh", background),
    ):
        print(
            f"  {name:28s} p50 {p50:7.1f}  p99 {p99:7.1f}  "
            f"(x{p50 / base[0]:.2f} / x{p99 / base[1]:.2f} of baseline)"
        )
    print("propensity computation per snapshot (cache miss), CPU time, medians:")
    for k in (5, 20, 50):
        c = _compute_cost(k)
        print(
            f"  K={k:2d} quadrature {c['quad_ms']:6.2f} ms L1 err {c['quad_l1']:.1e} "
            f"(estimate {c['quad_est']:.1e}) | monte carlo 2000 {c['mc_ms']:6.2f} ms "
            f"L1 err {c['mc_l1']:.1e}"
        )


if __name__ == "__main__":
    main()
