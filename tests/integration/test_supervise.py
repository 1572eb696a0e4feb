"""Supervision of the stack's processes: restart after a crash, count, give up on a crash loop;
run secrets saved 0600 and resumed. Real child processes, killed for real."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from services.cli.stack import RUN_FILE, Stack, StackError
from services.cli.supervise import Supervisor
from tests.polling import eventually

pytestmark = pytest.mark.integration  # starts processes


class Child:
    """A process with the ServiceProcess surface the supervisor uses (start, alive, proc)."""

    def __init__(self, code: str) -> None:
        self.code = code
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, cwd: Path) -> None:
        self.starts += 1
        self.proc = subprocess.Popen([sys.executable, "-c", self.code], cwd=cwd)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait()


class Stackish:
    def __init__(self, **children: Child) -> None:
        self.processes = children


async def test_a_killed_service_is_restarted_and_counted(tmp_path: Path) -> None:
    svc = Child("import time; time.sleep(60)")
    other = Child("import time; time.sleep(60)")
    stack = Stackish(features=svc, trainer=other)
    for c in (svc, other):
        c.start(tmp_path)
    events: list[str] = []
    sup = Supervisor(stack, tmp_path, first_backoff_s=0.05, on_event=events.append)
    try:
        for round_ in (1, 2):
            assert svc.proc is not None
            os.kill(svc.proc.pid, signal.SIGKILL)
            svc.proc.wait()
            sup.check()
            if round_ == 1:  # it had run fine: restarted at once
                assert sup.status()["features"]["state"] == "up" and svc.starts == 2
            else:  # a second exit within the window: after a back-off
                assert sup.status()["features"]["state"] == "DOWN (restarting)"
                assert not sup.healthy()

            def restarted(n: int = round_) -> bool:
                sup.check()
                return svc.alive and sup.status()["features"]["restarts"] == n

            await eventually(restarted, 10, f"features restarted {round_} time(s)")
        status = sup.status()
        assert status["features"]["exits"] == [-9, -9]
        assert status["trainer"] == {
            "state": "up", "restarts": 0, "exits": [], "down_s": 0.0, "gave_up": False
        }  # fmt: skip
        assert sup.healthy() and other.starts == 1
        assert any("features exited (-9)" in e for e in events)
    finally:
        svc.stop()
        other.stop()


async def test_a_service_that_keeps_crashing_is_given_up_and_the_run_is_unhealthy(
    tmp_path: Path,
) -> None:
    svc = Child("raise SystemExit(3)")
    stack = Stackish(inference=svc)
    svc.start(tmp_path)
    sup = Supervisor(stack, tmp_path, first_backoff_s=0.01, max_backoff_s=0.02, max_crashes=3)

    def gave_up() -> bool:
        sup.check()
        return sup.status()["inference"]["gave_up"]

    await eventually(gave_up, 15, "the supervisor to give up on a crash loop")
    status = sup.status()["inference"]
    assert status["state"] == "DOWN (gave up)"
    assert status["restarts"] == 2 and status["exits"] == [3, 3, 3]
    assert svc.starts == 3 and not sup.healthy()
    sup.check()
    assert svc.starts == 3, "no restart after giving up"


async def test_a_service_asking_to_be_started_again_is_restarted_at_once_not_as_a_crash(
    tmp_path: Path,
) -> None:
    """Exit 75 (features on gaining partitions while it runs) is a planned restart: at once,
    every time, counted as a restart, never toward giving up; a crash after it still is."""
    marker = tmp_path / "starts"
    # exits 75 on its first four starts, then crashes (3), then runs
    code = (
        f"import pathlib, time; p = pathlib.Path(r'{marker}'); n = int(p.read_text() or 0) "
        "if p.exists() else 0; p.write_text(str(n + 1)); "
        "raise SystemExit(75 if n < 4 else 3) if n < 5 else time.sleep(60)"
    )
    svc = Child(code)
    stack = Stackish(features=svc)
    svc.start(tmp_path)
    # a give-up after 2 crashes and a long back-off: only exits that are not 75 count
    sup = Supervisor(stack, tmp_path, first_backoff_s=0.05, max_backoff_s=0.1, max_crashes=2)
    try:

        def running() -> bool:
            sup.check()
            return svc.starts == 6 and svc.alive

        await eventually(running, 30, "features running after four planned restarts and a crash")
        status = sup.status()["features"]
        assert status["exits"] == [75, 75, 75, 75, 3]
        assert status["restarts"] == 5 and not status["gave_up"] and sup.healthy()
    finally:
        svc.stop()


def test_no_restart_while_stopping(tmp_path: Path) -> None:
    svc = Child("pass")
    stack = Stackish(ingestion=svc)
    svc.start(tmp_path)
    assert svc.proc is not None
    svc.proc.wait()
    sup = Supervisor(stack, tmp_path, first_backoff_s=0.0)
    sup.stopping = True
    sup.check()
    assert svc.starts == 1


def test_run_secrets_are_saved_private_and_resumed(tmp_path: Path) -> None:
    stack = Stack(tmp_path, "127.0.0.1:19999", "demo-x.")
    path = stack.save_run()
    assert path == tmp_path / RUN_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = Stack.resume(tmp_path, {"K": "V"})
    assert again.api_key == stack.api_key
    assert again.pseudonym_secret == stack.pseudonym_secret
    assert again.signing_keys == stack.signing_keys  # models signed before still verify
    assert (again.topic_prefix, again.bootstrap) == ("demo-x.", "127.0.0.1:19999")
    assert again.inference_port == stack.inference_port
    assert again.env_for("ingestion")["ADMUSE_PSEUDONYM_SECRET"] == stack.pseudonym_secret
    assert again.extra_env == {"K": "V"}
    # what `admuse erase` reads for this run
    values = dict(line.split("=", 1) for line in path.read_text().splitlines())
    assert values["ADMUSE_PSEUDONYM_SECRET"] == stack.pseudonym_secret
    assert values["ADMUSE_KAFKA_TOPIC_PREFIX"] == "demo-x."


def test_resume_of_a_folder_without_a_run_says_so(tmp_path: Path) -> None:
    try:
        Stack.resume(tmp_path)
    except StackError as exc:
        assert "cannot resume" in str(exc)
    else:
        raise AssertionError("resumed a folder with no run.env")
