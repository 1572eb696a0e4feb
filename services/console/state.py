"""The console's view of the topics, kept fresh: a loop reads a snapshot every
`refresh_s` (at once after an action) and wakes the pages' event streams when what they show
changed. A failed read is logged and shown on the pages; the last good snapshot stays."""

from __future__ import annotations

import asyncio
import time

from services.common.codec import SchemaRegistry
from services.common.logging import get_logger
from services.console.ops import Operations, read_operations
from services.console.settings import Settings
from services.console.snapshot import Snapshot, read_snapshot

__all__ = ["ConsoleState"]

_log = get_logger(__name__)


class ConsoleState:
    def __init__(self, settings: Settings, registry: SchemaRegistry) -> None:
        self.settings = settings
        self.registry = registry
        self.snapshot: Snapshot | None = None
        self.ops: Operations | None = None
        self.version = 0
        self.error: str | None = None
        self._digest: str | None = None
        self._changed = asyncio.Condition()
        self._kick = asyncio.Event()

    @property
    def ready(self) -> bool:
        return self.snapshot is not None

    def kick(self) -> None:
        """Read again now (after an action), not at the next tick."""
        self._kick.set()

    async def refresh(self) -> None:
        s = self.settings
        try:
            snap = await read_snapshot(s.kafka, self.registry, s.run_dir)
            ops = await read_operations(s.kafka, self.registry, s.run_dir, s.dead_letter_samples)
        except Exception as exc:  # the broker away, a topic missing: say so, keep the last
            self.error = f"reading the topics failed: {type(exc).__name__}: {exc}"
            _log.warning("console_read_failed", error=self.error)
            await self._bump()
            return
        digest = f"{snap.digest()}|{hash(repr(ops.services))}|{sum(ops.dead_letters.values())}"
        self.snapshot, self.ops, self.error = snap, ops, None
        _log.debug("console_snapshot_read", read_s=round(snap.read_s, 3))
        if digest != self._digest:
            self._digest = digest
            await self._bump()

    async def _bump(self) -> None:
        async with self._changed:
            self.version += 1
            self._changed.notify_all()

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            await self.refresh()
            wait = max(self.settings.refresh_s - (time.monotonic() - started), 0.05)
            try:
                await asyncio.wait_for(self._kick.wait(), wait)
            except TimeoutError:
                pass
            self._kick.clear()

    async def wait_change(self, seen: int, timeout_s: float) -> int:
        """The version once it differs from `seen`, or the same one after `timeout_s`."""
        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self.version != seen), timeout_s
                )
            except TimeoutError:
                pass
            return self.version
