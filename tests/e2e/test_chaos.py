"""The short fault suite CI runs: two cycles of every fault kind (SIGKILL of each service, a
paused features worker, a broker stop/start) under simulator load, on the suite's own broker,
then the books read back from the topics (services/chaos; `make chaos` runs longer ones).

Asserted strictly: every fault injected twice and recovered from, nothing the simulator wrote
lost and nothing forwarded twice, no answer without a model once one served, services up at
the end with their restarts counted, Decide back within 10 s (mean) of an inference kill, and
the suite's exit code saying whether the books balance. Books that the long run
(bench/RESULTS.md, 20 cycles) found short for reasons outside what this branch fixes are
printed, not asserted, so CI stays a signal for this branch: raw events lost when a broker
stop hits ingestion's transaction (rare: 6 of 26,290 at 3 of 20 stops), answered Decides whose
Decision was in inference's memory at SIGKILL, duplicate Decisions (the decision log is at
least once), and rewards: clicks turned into timeouts or not yet rewarded, decisions rewarded
twice (window closing in features, #12; features' at-least-once replay).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.chaos.books import problems
from services.chaos.faults import KINDS

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(540)]

REPORTED_ONLY = (
    "raw records do not add up",
    "neither forwarded nor dead-lettered",
    "have no Decision record",
    "Decision records are duplicates",
    "became timeout rewards",
    "clicks have no reward",
    "rewarded twice",
)


def test_short_fault_suite_books_balance(tmp_path: Path) -> None:
    port = int(os.environ.get("ADMUSE_KAFKA_PORT", "19092")) + 50
    run = tmp_path / "chaos"
    print(f"fault suite run folder: {run}")
    cmd = [sys.executable, "-m", "services.chaos", "--cycles", "2", "--port", str(port)]
    cmd += ["--run-dir", str(run), "--rate", "10", "--gap", "2", "--pause", "5"]
    cmd += ["--broker-down", "5"]
    done = subprocess.run(
        cmd, capture_output=True, text=True, timeout=520, env={**os.environ, "COLUMNS": "160"}
    )
    out = done.stdout + done.stderr
    assert (run / "chaos.json").exists(), out[-4000:]
    books = json.loads((run / "chaos.json").read_text())
    found = problems(books)
    assert done.returncode == (1 if found else 0), out[-4000:]

    kinds = [f["kind"] for f in books["faults"]]
    assert all(kinds.count(k) == 2 for k in KINDS), kinds
    assert all(f["recovered"] for f in books["faults"]), books["faults"]
    raw, sim = books["raw"], books["simulator"]
    assert raw["raw"] > 500 and raw["forwarded_twice"] == raw["forwarded_not_sent"] == 0, raw
    assert sim["lost"] == 0 and sim["written"] == raw["raw"], (sim, raw)
    assert books["decisions"]["answered"] > 500, books["decisions"]
    assert books["rewards"]["clicks_written"] > 20, books["rewards"]
    assert books["models"]["served_without_model_after_first"] == 0, books["models"]
    services = books["services"]
    assert all(s["state"] == "up" and s["restarts"] >= 2 for s in services.values()), services
    # The target is Decide back within 10 s of an inference kill (bench/RESULTS.md records it on
    # a quieter machine); on a loaded 2-core CI runner one restart may take a few seconds more.
    kill = books["availability"]["kill-inference"]
    assert kill["unavailable_s"] / kill["faults"] < 10 and kill["worst_s"] < 15, kill
    unexpected = [p for p in found if not any(r in p for r in REPORTED_ONLY)]
    assert not unexpected, (unexpected, out[-4000:])
    for p in found:  # shown in the test log: known, tracked outside this issue
        print(f"reported: {p}")
