"""The `admuse` command as people and compose run it: a real process, its help and verbs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from services.common.settings import ServiceSettings, env_vars

pytestmark = pytest.mark.integration  # starts processes

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SHARED = env_vars(ServiceSettings) | {"ADMUSE_PSEUDONYM_SECRET", "ADMUSE_SCHEMAS_DIR"}
# One-shot `admuse` steps in compose (the campaign the simulator plays is applied by the CLI).
CLI_STEPS = [n for n, svc in COMPOSE["services"].items() if svc.get("command", [""])[0] == "admuse"]


def test_admuse_help_lists_commands() -> None:
    exe = Path(sys.executable).with_name("admuse")
    out = subprocess.run(
        [str(exe), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "120"},
    )
    assert out.returncode == 0, out.stderr
    for command in (
        "topics",
        "campaign",
        "demo",
        "simulate",
        "train",
        "report",
        "ope",
        "replay",
        "erase",
    ):
        assert f" {command} " in out.stdout, command


@pytest.mark.parametrize("name", CLI_STEPS)
def test_compose_cli_steps_run_a_real_command_with_shared_variables_only(name: str) -> None:
    svc = COMPOSE["services"][name]
    exe = Path(sys.executable).with_name("admuse")
    out = subprocess.run(
        [str(exe), *svc["command"][1:-2], "--help"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "--scenario" in out.stdout
    assert not sorted(set(svc.get("environment", {})) - SHARED)
