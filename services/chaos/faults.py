"""The faults the suite injects, each waiting until the stack has recovered from it.

- `kill-<service>`: SIGKILL of the service's process group (the supervisor restarts it);
- `pause-<service>`: SIGSTOP, `pause_s` seconds, SIGCONT (a slow consumer: its group session
  may expire, its partitions move and come back);
- `broker`: the broker stopped (SIGTERM, deploy/kafka/kafka.sh down) for `broker_down_s`,
  then started again on the same data.

`inject` returns the fault's record: kind, start and end (epoch seconds; end = the moment the
fault was lifted), `recovered_s` (from the start until every service answered ready) and, for
the broker, the share of a core each service used while it was away.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["KINDS", "Broker", "inject"]

KINDS = (
    "kill-ingestion",
    "kill-features",
    "kill-trainer",
    "kill-inference",
    "pause-features",
    "broker",
)

_REPO = Path(__file__).resolve().parents[2]


@dataclass
class Broker:
    """The suite's own broker (its port, its data folder), so it may stop and start it."""

    port: int
    data_dir: Path

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _script(self, action: str) -> None:
        env = {
            **os.environ,
            "PYTHON": sys.executable,
            "ADMUSE_KAFKA_PORT": str(self.port),
            "ADMUSE_KAFKA_CONTROLLER_PORT": str(self.port + 1),
            "ADMUSE_KAFKA_DATA_DIR": str(self.data_dir),
        }
        subprocess.run(
            [str(_REPO / "deploy/kafka/kafka.sh"), action],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
        )

    async def up(self) -> None:
        await asyncio.to_thread(self._script, "up")

    async def down(self) -> None:
        await asyncio.to_thread(self._script, "down")


def _signal_group(proc: Any, sig: signal.Signals) -> None:
    if proc.proc is not None and proc.alive:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.proc.pid, sig)


async def _all_ready(stack: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        states = await asyncio.gather(
            *(asyncio.to_thread(p.ready) for p in stack.processes.values())
        )
        if all(states):
            return True
        await asyncio.sleep(0.5)
    return False


async def inject(
    kind: str,
    stack: Any,
    broker: Broker,
    *,
    pause_s: float = 8.0,
    broker_down_s: float = 10.0,
    recover_timeout_s: float = 120.0,
) -> dict[str, Any]:
    """Inject one fault, lift it, wait until every service is ready again."""
    start = time.time()
    extra: dict[str, Any] = {}
    action, _, target = kind.partition("-")
    if action == "kill":
        _signal_group(stack.processes[target], signal.SIGKILL)
    elif action == "pause":
        proc = stack.processes[target]
        _signal_group(proc, signal.SIGSTOP)
        try:
            await asyncio.sleep(pause_s)
        finally:
            _signal_group(proc, signal.SIGCONT)
    elif kind == "broker":
        await broker.down()
        before = _cpu_seconds(stack)
        t0 = time.monotonic()
        try:
            await asyncio.sleep(broker_down_s)
        finally:
            used = _cpu_seconds(stack)
            spent = time.monotonic() - t0
            await broker.up()
        # share of one core each service used while the broker was away (no busy loop: ~0)
        extra["cpu_share_while_down"] = {
            n: round((used[n] - before[n]) / spent, 3) for n in used if n in before
        }
    else:
        raise ValueError(f"unknown fault {kind!r}; one of {', '.join(KINDS)}")
    end = time.time()
    if action == "kill":  # give the supervisor time to notice before asking for readiness
        await asyncio.sleep(1.0)
    ok = await _all_ready(stack, recover_timeout_s)
    return {
        "kind": kind,
        "start": start,
        "end": end,
        "recovered": ok,
        "recovered_s": round(time.time() - start, 1),
        **extra,
    }


def _cpu_seconds(stack: Any) -> dict[str, float]:
    """CPU seconds (user + system) of each service's main process, from /proc."""
    out = {}
    tick = os.sysconf("SC_CLK_TCK")
    for name, proc in stack.processes.items():
        if proc.proc is None:
            continue
        try:
            fields = Path(f"/proc/{proc.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[name] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return out
