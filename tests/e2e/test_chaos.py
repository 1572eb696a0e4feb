"""The short fault suite CI runs: two cycles of every fault kind (SIGKILL of each service, a
paused features worker, a broker stop/start) under simulator load, on the suite's own broker,
then the books read back from the topics (services/chaos; `make chaos` runs longer ones).

Asserted strictly — every book the issue lists: every fault injected twice and recovered
from; the raw books (every raw event forwarded, dead-lettered, consent-dropped or a
duplicate; none missing, none forwarded twice); nothing the simulator wrote lost; the decision
log (every answered Decide has exactly one Decision record: inference runs with
ADMUSE_INFERENCE_DECISION_ACK=true, as docs/contracts.md "Decision log" requires for that
guarantee); the rewards books (every click the simulator wrote is one clicked Reward — none
turned into a timeout, none without a Reward, no decision with differing Rewards; an unchanged
re-send is allowed by the contract and only counted); no answer without a model once one
served; services up at the end with their restarts counted; Decide back within 10 s (mean) of
an inference kill; and the suite's exit code saying whether the books balance. Clicks are held
by the simulator while Kafka is away and its watermark claims in the raw topic hold the
windows open meanwhile (docs/contracts.md "Watermarks", live sources).
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


def test_short_fault_suite_books_balance(tmp_path: Path) -> None:
    port = int(os.environ.get("ADMUSE_KAFKA_PORT", "19092")) + 50
    run = tmp_path / "chaos"
    print(f"fault suite run folder: {run}")
    cmd = [sys.executable, "-m", "services.chaos", "--cycles", "2", "--port", str(port)]
    # traffic runs while the faults do, and on until 600 Decides are answered: faults that
    # recover fast leave little of it (one CI run answered exactly 500 of 746: quick
    # recoveries, and the broker stops fail ~225 Decides by design, decision ack on)
    cmd += ["--run-dir", str(run), "--rate", "10", "--gap", "2", "--pause", "5"]
    cmd += ["--min-answered", "600"]
    cmd += ["--broker-down", "5"]
    done = subprocess.run(
        cmd, capture_output=True, text=True, timeout=520, env={**os.environ, "COLUMNS": "160"}
    )
    out = done.stdout + done.stderr
    assert (run / "chaos.json").exists(), out[-4000:]
    books = json.loads((run / "chaos.json").read_text())
    found = problems(books)
    assert not found, (found, out[-4000:])
    assert done.returncode == 0, out[-4000:]

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
    assert dec["without_decision"] == dec["duplicate_decisions"] == 0, dec
    assert rew["clicks_on_unlogged_decisions"] == 0, rew
    # a click that by event time came after its window (Decide slow during a fault) is a
    # rightful timeout, counted apart; every other click is a clicked Reward
    assert rew["clicked_rewards"] + rew["clicks_after_window"] == rew["clicks_written"], rew
    assert rew["clicks_turned_into_timeout"] == rew["clicks_without_reward"] == 0, rew
    assert rew["decisions_rewarded_differently"] == 0, rew
    assert books["models"]["served_without_model_after_first"] == 0, books["models"]
    services = books["services"]
    assert all(s["state"] == "up" and s["restarts"] >= 2 for s in services.values()), services
    # The target is Decide back within 10 s of an inference kill (bench/RESULTS.md records it on
    # a quieter machine); on a loaded 2-core CI runner one restart may take a few seconds more.
    kill = books["availability"]["kill-inference"]
    assert kill["unavailable_s"] / kill["faults"] < 10 and kill["worst_s"] < 15, kill
