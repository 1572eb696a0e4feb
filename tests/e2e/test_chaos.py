"""The short fault suite CI runs: two cycles of every fault kind (SIGKILL of each service, a
paused features worker, a broker stop/start) under simulator load, on the suite's own broker,
then the books read back from the topics (services/chaos; `make chaos` runs longer ones).

Asserted strictly: every fault injected twice and recovered from, the raw books (every raw
event forwarded, dead-lettered, consent-dropped or a duplicate; none missing, none forwarded
twice), nothing the simulator wrote lost, the rewards books (every click on a logged decision
rewarded — none without a Reward — and no decision with differing Rewards; an unchanged re-send
is allowed by the contract and only counted), no answer
without a model once one served, services up at the end with their restarts counted, Decide
back within 10 s (mean) of an inference kill, and the suite's exit code saying whether the
books balance. Printed, not asserted: the decision-log books (answered Decides whose Decision
was in inference's memory at SIGKILL, duplicate Decisions: the decision log is at least once),
which another branch makes exactly once; a click on such an unlogged decision is counted
apart, never as a click without a Reward. Also printed: clicks turned into timeouts at a broker
stop — a click the collector refused (503) while the broker was away reaches the raw topic only
when the app resends it, later than the allowed watermark skew, while ingestion, seeing its raw
partitions read to their end, lets the watermark advance to the wall clock and features closes
the window first (late by the contract's definition; open: the watermark does not know that a
source holds refused events).
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
    "have no Decision record",
    "Decision records are duplicates",
    "became timeout rewards",
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
    assert raw["imbalance"] == raw["missing"] == 0, raw
    assert sim["lost"] == 0 and sim["written"] == raw["raw"], (sim, raw)
    dec, rew = books["decisions"], books["rewards"]
    assert dec["answered"] > 500, dec
    assert rew["clicks_written"] > 20, rew
    logged_clicks = rew["clicks_written"] - rew["clicks_on_unlogged_decisions"]
    assert rew["clicked_rewards"] + rew["clicks_turned_into_timeout"] == logged_clicks, rew
    assert rew["clicks_without_reward"] == 0, rew
    assert rew["decisions_rewarded_differently"] == 0, rew
    assert rew["clicks_on_unlogged_decisions"] <= dec["without_decision"], (rew, dec)
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
