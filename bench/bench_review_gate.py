"""What the lifecycle gate and the pin check add to a decision (#17), in process.

One choice = `Gate.answer` (is the campaign active?) then `Policy.choose` for a user on the
optimized arm of a segment with 20 live creatives (warm propensity cache), which now first
looks for pinned creatives (cached until the campaign's creatives change). Baseline, same
run: `Policy.choose` with the pin lookup replaced
by a constant "no pins" (the decision path before #17), no gate. Also the cost of a paused
campaign's answer (gate only) and of a pinned choice. Medians over REPEATS of REQUESTS.

Run: python bench/bench_review_gate.py  (no broker needed)
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry

import services.inference.policy as policy_module
from services.inference.gate import Gate
from services.inference.policy import Policy
from services.inference.state import State

REPEATS = int(os.environ.get("REPEATS", "7"))
REQUESTS = int(os.environ.get("REQUESTS", "20000"))
SEG = "country=DE|device=mobile"


def _state(pinned: bool = False, state: str = "active") -> State:
    s = State()
    s.apply_campaign("c", {"campaign_id": "c", "revision": 1, "segment_keys": ["country"],
                           "holdout_share": 0.0, "attribution_window_ms": 1, "state": state,
                           "fallback_creative_id": "c0"})  # fmt: skip
    for i in range(20):
        s.apply_creative(f"c{i}", {"creative_id": f"c{i}", "campaign_id": "c",
                                   "origin": "catalog", "segment": None, "status": "live",
                                   "attributes": {"h": str(i)}, "prior_alpha": 1.0 + i,
                                   "prior_beta": 30.0,
                                   "pinned": "*" if pinned and i == 3 else None})  # fmt: skip
    return s


def _per_call_us(paths: dict[str, Callable[[int], Any]]) -> dict[str, float]:
    """Median µs per call of each path; repeats interleaved, so load drifts hit all alike."""
    runs: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(REPEATS):
        for name, fn in paths.items():
            t0 = time.perf_counter()
            for i in range(REQUESTS):
                fn(i)
            runs[name].append((time.perf_counter() - t0) / REQUESTS * 1e6)
    return {name: statistics.median(r) for name, r in runs.items()}


def _path(state: State, gate: Gate | None) -> Callable[[int], Any]:
    policy = Policy(state, exploration_floor=0.01, n_draws=1000, refresh_ms=0,
                    backoff_impressions=200, seed=1)  # fmt: skip
    campaign = state.campaigns["c"]
    users = [f"u{i}" for i in range(1000)]

    def one(i: int) -> Any:
        if gate is not None and gate.answer(campaign, SEG, "bench") is not None:
            return None
        return policy.choose(campaign, SEG, users[i % 1000])

    return one


def main() -> None:
    active = _state()
    real = policy_module.Pins
    policy_module.Pins = lambda _state: lambda *_: []  # the decision path before #17
    try:
        baseline = _path(active, None)
    finally:
        policy_module.Pins = real
    pinned, paused = _state(pinned=True), _state(state="paused")
    us = _per_call_us({
        "baseline choose (no gate, no pin lookup)": baseline,
        "gate + pin lookup + choose": _path(active, Gate(active, CollectorRegistry())),
        "pinned choice": _path(pinned, Gate(pinned, CollectorRegistry())),
        "paused campaign answer (gate only)": _path(paused, Gate(paused, CollectorRegistry())),
    })  # fmt: skip
    print(f"requests {REQUESTS} x {REPEATS} repeats (interleaved), 20 live creatives, optimized")
    base = us["baseline choose (no gate, no pin lookup)"]
    for label, t in us.items():
        print(f"{label:42s} {t:7.2f} us  ratio {t / base:.2f}")


if __name__ == "__main__":
    main()
