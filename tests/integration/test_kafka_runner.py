"""deploy/kafka/kafka.sh as a user meets it: busy ports, stale pid files, restarts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.common.settings import KafkaSettings

pytestmark = pytest.mark.integration
KAFKA = Path(__file__).resolve().parents[2] / "deploy" / "kafka" / "kafka.sh"


def _run(cmd: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(KAFKA), cmd], env=env, capture_output=True, text=True, timeout=180)


def _env(tmp_path: Path, port: int) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHON": sys.executable,
        "ADMUSE_KAFKA_DATA_DIR": str(tmp_path),
        "ADMUSE_KAFKA_PORT": str(port),
        "ADMUSE_KAFKA_CONTROLLER_PORT": str(port + 1),
    }


def test_busy_port_is_reported_clearly(tmp_path: Path, kafka_base: KafkaSettings) -> None:
    taken = int(kafka_base.bootstrap_servers.rsplit(":", 1)[1])  # the test broker holds it
    out = _run("up", _env(tmp_path, taken))
    assert out.returncode != 0
    assert f"port {taken} is already in use" in out.stderr


@pytest.mark.slow
def test_stale_pid_then_restart_on_formatted_folder(tmp_path: Path) -> None:
    env = _env(tmp_path, 29192)
    (tmp_path / "kafka.pid").write_text("999999\n")
    assert _run("status", env).returncode == 1
    try:
        first = _run("up", env)
        assert first.returncode == 0, first.stderr
        assert "removing stale pid file" in first.stdout
        assert "ready on 127.0.0.1:29192" in first.stdout
        assert _run("up", env).stdout.startswith("kafka.sh: already running")
        assert _run("down", env).returncode == 0
        assert (tmp_path / "logs" / "meta.properties").exists()
        second = _run("up", env)  # formatted folder: starts without formatting again
        assert second.returncode == 0, second.stderr
        assert _run("status", env).returncode == 0
    finally:
        _run("down", env)
    assert _run("status", env).returncode == 1
