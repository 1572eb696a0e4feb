"""Keep the stack's services running: restart a crashed one with back-off, count, give up.

`Supervisor.run(stop)` checks every service process five times a second. One that exited while
the run goes on (crash, SIGKILL, OOM) after running fine is started again at once (its
unavailability is its start-up, nothing more); another exit within the window waits a back-off
(1 s, doubling to 30 s, jittered; reset once it has run a minute); each restart is counted.
An exit with `RESTART_EXIT_CODE` (75) is a service asking to be started again (features does
on gaining partitions while it runs): restarted at once, counted as a restart, not a crash.
A service that crashes `max_crashes` times within `window_s` is left down ("gave up"):
restarting it again would only hide a bug. `status()` is what the live view, the status lines
and the final report show, and `healthy()` decides the command's exit code: false when a
service gave up or is down at the end. With `status_path`, each change is also written there
as JSON (state, restarts, exit codes, pid per service): `<run>/services.json` of `admuse demo`
and `admuse up`.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.common.health import RESTART_EXIT_CODE
from services.common.logging import get_logger

__all__ = ["ServiceHealth", "Supervisor"]

_log = get_logger(__name__)


@dataclass
class ServiceHealth:
    """What the supervisor knows about one service."""

    restarts: int = 0
    exits: list[int | None] = field(default_factory=list)
    recent: deque[float] = field(default_factory=deque)  # monotonic times of recent crashes
    restart_at: float | None = None  # pending restart
    down_since: float | None = None
    down_s: float = 0.0
    gave_up: bool = False
    started_at: float = field(default_factory=time.monotonic)

    def state(self, alive: bool) -> str:
        if alive:
            return "up"
        if self.gave_up:
            return "DOWN (gave up)"
        return "DOWN (restarting)" if self.restart_at is not None else "DOWN"


class Supervisor:
    """Restarts the processes of a `Stack` (anything with `.processes: {name: proc}`)."""

    def __init__(
        self,
        stack: Any,
        cwd: Path,
        *,
        first_backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        max_crashes: int = 5,
        window_s: float = 300.0,
        stable_after_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        on_event: Callable[[str], None] | None = None,
        status_path: Path | None = None,
    ) -> None:
        self.stack = stack
        self.cwd = cwd
        self.first_backoff_s = first_backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_crashes = max_crashes
        self.window_s = window_s
        self.stable_after_s = stable_after_s
        self.clock = clock
        self.on_event = on_event or (lambda _msg: None)
        self.health: dict[str, ServiceHealth] = {}
        self._rng = random.Random()
        self.stopping = False
        self.status_path = status_path
        self._written: str | None = None

    def _h(self, name: str) -> ServiceHealth:
        if name not in self.health:
            self.health[name] = ServiceHealth(started_at=self.clock())
        return self.health[name]

    def check(self) -> None:
        """One pass: notice exits, schedule and perform restarts."""
        if self.stopping:
            return
        now = self.clock()
        for name, proc in self.stack.processes.items():
            h = self._h(name)
            if proc.alive:
                if h.down_since is not None:
                    h.down_s += now - h.down_since
                    h.down_since = None
                continue
            if h.gave_up:
                continue
            if h.down_since is None:  # a new exit
                h.down_since = now
                code = proc.proc.returncode if getattr(proc, "proc", None) else None
                h.exits.append(code)
                if code == RESTART_EXIT_CODE:  # it asked to be started again: not a crash
                    h.restart_at = now
                    self._say(f"{name} asked to be started again (exit {code})")
                elif not self._crashed(name, h, now, code):
                    continue
            if h.restart_at is not None and now >= h.restart_at:
                h.restart_at = None
                h.restarts += 1
                h.started_at = now
                proc.start(self.cwd)
                h.down_s += now - (h.down_since or now)
                h.down_since = None
                self._say(f"{name} restarted (restart {h.restarts})")

    def _crashed(self, name: str, h: ServiceHealth, now: float, code: int | None) -> bool:
        """Count a crash and schedule its restart with back-off; False when giving up."""
        if now - h.started_at >= self.stable_after_s:
            h.recent.clear()  # it ran fine for a while: back-off starts over
        h.recent.append(now)
        while h.recent and now - h.recent[0] > self.window_s:
            h.recent.popleft()
        if len(h.recent) >= self.max_crashes:
            h.gave_up = True
            self._say(
                f"{name} exited ({code}) {len(h.recent)} times in "
                f"{self.window_s:.0f}s: giving up on it"
            )
            return False
        crashes = len(h.recent)
        delay = min(self.max_backoff_s, self.first_backoff_s * 2 ** (crashes - 2))
        h.restart_at = now + (self._rng.uniform(delay / 2, delay) if crashes > 1 else 0.0)
        self._say(f"{name} exited ({code}); restarting in {h.restart_at - now:.1f}s")
        return True

    def _say(self, msg: str) -> None:
        _log.warning("service_supervision", message=msg)
        self.on_event(msg)

    def write_status(self) -> None:
        """`status()` plus each process id, as JSON in `status_path` (when it changed)."""
        if self.status_path is None:
            return
        status = self.status()
        for name, proc in self.stack.processes.items():
            popen = getattr(proc, "proc", None)
            status[name]["pid"] = popen.pid if popen is not None and proc.alive else None
            status[name].pop("down_s")  # changes every pass; the rest changes on events
        text = json.dumps(status, indent=2)
        if text != self._written:
            tmp = self.status_path.with_name(self.status_path.name + ".tmp")
            tmp.write_text(text)
            tmp.replace(self.status_path)
            self._written = text

    async def run(self, stop: asyncio.Event, every_s: float = 0.2) -> None:
        """`check` every `every_s` until `stop` is set."""
        while not stop.is_set():
            self.check()
            self.write_status()
            try:
                await asyncio.wait_for(stop.wait(), every_s)
            except TimeoutError:
                pass

    def status(self) -> dict[str, dict[str, Any]]:
        """Per service: state (up / DOWN …), restarts, exit codes seen, seconds down."""
        now = self.clock()
        out = {}
        for name, proc in self.stack.processes.items():
            h = self._h(name)
            down = h.down_s + (now - h.down_since if h.down_since is not None else 0.0)
            state = "stopped" if self.stopping and not proc.alive else h.state(proc.alive)
            out[name] = {
                "state": state,
                "restarts": h.restarts,
                "exits": list(h.exits),
                "down_s": round(down, 1),
                "gave_up": h.gave_up,
            }
        return out

    def healthy(self) -> bool:
        """No service gave up and every one is running now."""
        return all(not self._h(n).gave_up and p.alive for n, p in self.stack.processes.items())

    def line(self) -> str:
        """`ingestion up, features DOWN (restarting) 2 restarts, …` for status lines."""
        parts = []
        for name, s in self.status().items():
            text = f"{name} {s['state']}"
            if s["restarts"]:
                text += f" ({s['restarts']} restart{'s' if s['restarts'] != 1 else ''})"
            parts.append(text)
        return ", ".join(parts)
