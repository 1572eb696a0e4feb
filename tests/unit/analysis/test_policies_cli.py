"""Target policies, and `admuse replay --to ope` / `admuse ope --replay` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from services.analysis import LoggedData
from services.analysis.policies import PolicyError, greedy, parse_policy_spec
from services.cli import app

DATA = LoggedData.from_columns(
    context=["s=a", "s=a", "s=b", "s=b"],
    action=["c1", "c2", "c1", "c2"],
    reward=[1, 0, 0, 1],
    propensity=[0.5] * 4,
)


def test_greedy_takes_the_best_posterior_mean_per_segment_and_falls_back() -> None:
    state = {"s=a": {"c1": (9.0, 1.0), "c2": (1.0, 9.0)}, "*": {"c1": (1.0, 1.0), "c2": (2.0, 1.0)}}
    pol = greedy(DATA, state)
    assert pol.probs.tolist() == [[1.0, 0.0], [0.0, 1.0]]  # s=b uses the '*' entry
    tie = greedy(DATA, {"s=a": {"c1": (1.0, 1.0), "c2": (2.0, 2.0), "c9": (0.5, 0.5)}})
    assert tie.probs[0].tolist() == pytest.approx([1 / 3, 1 / 3])
    assert tie.unlogged[0] == pytest.approx(1 / 3)  # c9 never logged: unsupported


def test_policy_specs() -> None:
    assert parse_policy_spec("creative:c1").arg == "c1"
    assert parse_policy_spec("greedy").arg is None
    with pytest.raises(PolicyError, match="unknown policy"):
        parse_policy_spec("best")


def _csv(path: Path, n: int = 4000) -> Path:
    rng = np.random.default_rng(0)
    seg = rng.choice(["DE", "FR"], n)
    ad = rng.choice(["c1", "c2"], n)
    click = (rng.random(n) < np.where(ad == "c1", 0.2, 0.1)).astype(int)
    lines = [f"{s},{a},0.5,{c}" for s, a, c in zip(seg, ad, click, strict=True)]
    path.write_text("country,ad,p,click\n" + "\n".join(lines) + "\n")
    return path


MAPPING = "action=ad,reward=click,propensity=p,context=country"


def test_replay_to_ope_prints_and_writes_estimates(tmp_path: Path) -> None:
    out = tmp_path / "ope.json"
    res = CliRunner().invoke(
        app,
        [
            "replay",
            str(_csv(tmp_path / "l.csv")),
            "--mapping",
            MAPPING,
            "--to",
            "ope",
            "--policy",
            "creative:c1",
            "--json",
            str(out),
            "--html",
            str(tmp_path / "ope.html"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "SNIPS" in res.output
    doc = json.loads(out.read_text())
    dr = doc["estimates"]["DR"]
    assert dr["low"] < 0.2 < dr["high"]  # c1's true click rate
    assert (tmp_path / "ope.html").read_text().startswith("<!doctype html>")


def test_ope_refuses_with_reason_and_exit_code(tmp_path: Path) -> None:
    res = CliRunner().invoke(
        app,
        [
            "ope",
            "--replay",
            str(_csv(tmp_path / "l.csv")),
            "--mapping",
            MAPPING,
            "--policy",
            "creative:c3",
            "--json",
            str(tmp_path / "ope.json"),
            "--html",
            str(tmp_path / "ope.html"),
        ],
    )
    assert res.exit_code == 3
    assert "refused" in res.output and "never logged" in res.output
    doc = json.loads((tmp_path / "ope.json").read_text())
    assert doc["refused"] and doc["estimates"] == {} and doc["support"]["unsupported_mass"] == 1.0
    assert "Refused" in (tmp_path / "ope.html").read_text()


def test_bad_rows_stop_replay_with_row_numbers(tmp_path: Path) -> None:
    path = tmp_path / "l.csv"
    path.write_text("country,ad,p,click\nDE,c1,0.5,1\nDE,c1,-0.1,1\nDE,,0.5,1\n")
    res = CliRunner().invoke(
        app, ["replay", str(path), "--mapping", MAPPING, "--to", "ope", "--policy", "uniform"]
    )
    assert res.exit_code == 2
    text = " ".join(res.output.split())
    assert "row 2 (line 3)" in text and "row 3 (line 4)" in text


@pytest.mark.parametrize(
    "args",
    [
        ["report", "--campaign", "spring", "--from", "last tuesday"],
        ["report", "--campaign", "spring", "--decisions-offsets", "x-y"],
        ["report", "--campaign", "spring", "--control-share", "1.5"],
        ["ope", "--policy", "uniform"],  # no source
        ["ope", "--policy", "uniform", "--replay", "missing.csv", "--mapping", MAPPING],
        ["replay", "f.csv", "--mapping", MAPPING, "--to", "kafka"],  # no campaign
    ],
)
def test_bad_arguments_exit_2_with_a_message_before_touching_kafka(args: list[str]) -> None:
    res = CliRunner(env={"ADMUSE_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}).invoke(app, args)
    assert res.exit_code == 2, res.output
    assert "error" in res.output.lower()


def test_a_user_id_as_context_is_refused_up_front(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.analysis import policies

    n = 2_000
    data = LoggedData.from_columns(
        context=[f"user={i}" for i in range(n)],
        action=[f"c{i}" for i in range(n)],
        reward=[0.0] * n,
        propensity=[0.5] * n,
    )
    monkeypatch.setattr(policies, "MAX_CELLS", 1_000_000)  # 2,000 x 2,000 = 4M cells
    with pytest.raises(PolicyError, match="an id is not a segment"):
        policies.uniform(data)
