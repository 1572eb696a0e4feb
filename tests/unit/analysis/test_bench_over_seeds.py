"""The generation benchmark's cells across their seeds (bench/bench_generation.py)."""

from __future__ import annotations

import math

import pytest

from bench.bench_generation import markdown_over_seeds, over_seeds, verdict


def _run(
    seed: int,
    diff: float,
    lift: float,
    *,
    level: float = 0.02,
    budget: float = 300.0,
    env=None,
    **kw,
) -> dict:
    gen = {"true_ctr_difference_stratified": diff, "lift": lift}
    own = "beats" if diff > 0.001 else ("WORSE" if diff < -0.001 else "not worse")
    return {"level": level, "rate": 100.0, "budget_s": budget, "seed": seed, "env": env or {},
            "virtual": kw.get("virtual", True),
            "generation": gen,
            "verdict": kw.get("clicks", "not worse"), "verdict_stratified": own,
            "admitted": 5, "promoted": kw.get("promoted", 1)}  # fmt: skip


def test_a_cell_is_judged_across_its_seeds_not_by_one_run() -> None:
    # one run behind by its own interval, the cell ahead across seeds
    runs = [_run(s, d, 0.05) for s, d in enumerate([0.004, 0.003, -0.0015, 0.005, 0.002, 0.004])]
    (cell,) = over_seeds(runs)
    assert cell["seeds"] == [0, 1, 2, 3, 4, 5]
    assert cell["truth"][0] == pytest.approx(sum(r["generation"]["true_ctr_difference_stratified"]
                                                 for r in runs) / 6)  # fmt: skip
    assert cell["truth"][1] > 0 and cell["verdict_truth"] == "beats"
    assert cell["runs_worse_truth"] == 1 and cell["runs_beat_truth"] == 5
    # the same runs, one more seed far behind: the spread now holds 0
    (wide,) = over_seeds([*runs, _run(6, -0.03, -0.2)])
    assert wide["verdict_truth"] == "not worse" and wide["truth"][1] < 0 < wide["truth"][2]


def test_cells_apart_by_level_and_settings_a_seed_counted_once_failures_counted() -> None:
    runs = [
        _run(0, 0.01, 0.1), _run(1, 0.012, 0.1), _run(0, -0.01, -0.1),  # seed 0 again: last
        _run(0, 0.2, 0.5, level=0.1),
        _run(0, -0.02, -0.3, env={"INFERENCE_CURATE": "false"}),
        _run(0, 0.05, 0.2, budget=180.0),
        _run(0, 0.07, 0.2, virtual=False),  # the same cell on the real stack
        {"level": 0.02, "rate": 100.0, "budget_s": 300.0, "seed": 2, "env": {}, "virtual": True,
         "error": "boom", "exit": 1},
    ]  # fmt: skip
    summary = over_seeds(runs)
    plain = [(c["budget_s"], c["virtual"]) for c in summary if c["level"] == 0.02 and not c["env"]]
    assert sorted(plain) == [(180, True), (300, False), (300, True)]
    cells = {
        (c["level"], tuple(c["env"].items())): c
        for c in summary
        if c["budget_s"] == 300 and c["virtual"]
    }
    main = cells[(0.02, ())]
    assert main["seeds"] == [0, 1] and main["failed"] == 1
    assert main["truth"][0] == pytest.approx((-0.01 + 0.012) / 2)
    one = cells[(0.1, ())]
    assert one["truth"][0] == 0.2 and math.isinf(one["truth"][1])  # no spread from one run
    assert one["verdict_truth"] == "not worse"
    assert cells[(0.02, (("INFERENCE_CURATE", "false"),))]["seeds"] == [0]
    table = markdown_over_seeds(list(cells.values()))
    assert "1 failed" in table and "INFERENCE_CURATE=false" in table
    assert "(the stack)" in markdown_over_seeds(summary)


def test_a_run_without_a_per_segment_figure_is_left_out_of_that_mean_only() -> None:
    runs = [_run(0, 0.01, 0.1), _run(1, 0.03, 0.3), _run(2, 0.0, 0.2)]
    runs[2]["generation"]["true_ctr_difference_stratified"] = None  # an old record
    (cell,) = over_seeds(runs)
    assert cell["truth"][0] == pytest.approx(0.02) and cell["lift"][0] == pytest.approx(0.2)


def test_verdict_reads_the_interval() -> None:
    assert verdict(0.01, 0.2) == "beats"
    assert verdict(-0.2, -0.01) == "WORSE"
    assert verdict(-0.1, 0.1) == "not worse"
    assert verdict(float("nan"), float("nan")) == "not worse"
