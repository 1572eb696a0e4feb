"""`admuse demo` as a user runs it, against the test broker (its own topic prefix): the command
line, its output and the run folder. Shared by the e2e tests of the loop and of the domains."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from services.common.settings import KafkaSettings

# Demo pace for a short run: a quick floor between versions, fewer GAN steps.
SHORT_RUN_TRAINER = {
    "ADMUSE_TRAINER_RETRAIN_FLOOR_MIN_S": "5",
    "ADMUSE_TRAINER_RETRAIN_EVERY_MINUTES": "0.5",
    "ADMUSE_TRAINER_MIN_ROWS": "200",
    "ADMUSE_TRAINER_GAN_STEPS": "200",
}


def run_demo(
    kafka: KafkaSettings,
    run: Path,
    *,
    scenario: str,
    budget_s: int,
    seed: int = 1,
    env: Mapping[str, str] = SHORT_RUN_TRAINER,
    timeout_s: float,
) -> tuple[int, str]:
    """(exit code, the output's tail with each service's last error lines)."""
    cmd = [
        sys.executable,
        "-c",
        "from services.cli import app; app()",
        "demo",
        "--scenario",
        scenario,
        "--budget",
        str(budget_s),
        "--seed",
        str(seed),
        "--run-dir",
        str(run),
        "--topic-prefix",
        kafka.topic_prefix,
        "--no-live",
        "--ready-timeout",
        "90",
    ]
    for key, value in env.items():
        cmd += ["--env", f"{key}={value}"]
    proc_env = {
        **os.environ,
        "ADMUSE_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "COLUMNS": "160",
    }
    proc = subprocess.run(
        cmd, env=proc_env, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    return proc.returncode, proc.stdout[-6000:] + proc.stderr[-3000:] + service_errors(run)


def service_errors(run: Path, per_service: int = 8) -> str:
    """The last error lines of each service's log: what blocked the loop, when it fails."""
    lines = []
    for log in sorted((run / "logs").glob("*.log")):
        errors = [
            line[:400]
            for line in log.read_text(errors="replace").splitlines()
            if '"error"' in line or "[ERROR]" in line or "Traceback" in line
        ]
        if errors:
            lines.append(f"--- {log.name} ({len(errors)} error lines, last {per_service}):")
            lines += errors[-per_service:]
    return "\n" + "\n".join(lines) if lines else ""
