"""`admuse up` as a user runs it: the four services come up supervised; one killed with
SIGKILL comes back and is counted; Ctrl-C stops them, prints the supervision table and exits 0;
the run folder keeps its secrets (0600) and `--resume` starts the same run again."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from services.cli.stack import RUN_FILE
from services.common.settings import KafkaSettings
from tests.polling import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(400)]


def wait_for(
    check: Callable[[], bool], timeout_s: float, what: str, proc: subprocess.Popen[str]
) -> None:
    """Poll `check` until it returns something truthy; fail naming `what` (sync: a subprocess)."""

    def done() -> bool:
        assert proc.poll() is None, f"admuse up exited ({proc.returncode}) waiting for {what}"
        return bool(check())

    wait_until(done, timeout_s, what, every_s=0.5)


def status(run: Path) -> dict[str, dict[str, object]] | None:
    try:
        return json.loads((run / "services.json").read_text())
    except (OSError, ValueError):
        return None


def start(run: Path, kafka: KafkaSettings, *extra: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-c", "from services.cli import app; app()", "up", *extra]
    cmd += ["--status-every", "5", "--ready-timeout", "180"]
    env = {
        **os.environ,
        "ADMUSE_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "COLUMNS": "200",
    }
    return subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=90)
    return out


def all_up(run: Path) -> bool:
    s = status(run)
    return bool(s) and all(v["state"] == "up" for v in s.values())


def test_up_restarts_a_killed_service_and_resumes_the_run(
    kafka: KafkaSettings, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    proc = start(run, kafka, "--run-dir", str(run), "--topic-prefix", kafka.topic_prefix)
    try:
        wait_for(lambda: all_up(run), 200, "all four services up", proc)
        secrets = run / RUN_FILE
        assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
        first = status(run)
        assert first is not None
        os.killpg(int(first["features"]["pid"]), signal.SIGKILL)  # type: ignore[arg-type]

        def back() -> bool:
            s = status(run)
            return bool(s) and s["features"]["restarts"] == 1 and s["features"]["state"] == "up"

        wait_for(back, 60, "features restarted", proc)
    finally:
        out = stop(proc)
    assert proc.returncode == 0, out[-4000:]
    assert "features exited (-9)" in out and "features restarted (restart 1)" in out, out[-4000:]
    table = out[out.rindex("services") :]
    assert "features" in table and "-9" in table, table

    (run / "services.json").unlink()
    again = start(run, kafka, "--resume", str(run))
    try:
        wait_for(lambda: all_up(run), 200, "the resumed run up", again)
    finally:
        out = stop(again)
    assert again.returncode == 0, out[-4000:]
    flat = " ".join(out.split())  # the console wraps long lines
    assert f"resuming run {run}" in flat and f"topics prefixed {kafka.topic_prefix!r}" in flat
