"""Say where a service is stuck when it does not stop in time.

`async with watching_shutdown(stop):` around a service's run (or `watch_shutdown(stop, after_s)`
as a task next to its main tasks): once `stop` is set,
it waits `after_s` seconds and, if the service is still running, logs the stack of every
pending asyncio task ("shutdown stalled"). The service keeps its own shutdown logic; this only
turns a silent hang into a log line that names the await it hangs on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import structlog

__all__ = ["task_stacks", "watch_shutdown", "watching_shutdown"]

_log = structlog.get_logger(__name__)


def _await_chain(coro: Any) -> list[str]:
    """The frames of a coroutine and of everything it awaits, outermost first."""
    lines: list[str] = []
    while coro is not None and len(lines) < 40:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            code = frame.f_code
            lines.append(f"{code.co_filename}:{frame.f_lineno} in {code.co_name}")
        nxt = getattr(coro, "cr_await", None)
        if nxt is None:
            nxt = getattr(coro, "gi_yieldfrom", None)
        if nxt is None and frame is None:
            lines.append(repr(coro)[:200])
        coro = nxt
    return lines


def task_stacks() -> dict[str, list[str]]:
    """Every pending task of the running loop but the caller's, by name: the chain of awaits
    it is suspended in (the innermost line is what it waits for)."""
    me = asyncio.current_task()
    return {
        f"{task.get_name()}#{id(task):x}": _await_chain(task.get_coro())
        for task in asyncio.all_tasks()
        if task is not me and not task.done()
    }


async def watch_shutdown(stop: asyncio.Event, after_s: float) -> None:
    """Once `stop` is set, log the pending tasks' stacks every `after_s` until cancelled."""
    await stop.wait()
    while True:
        await asyncio.sleep(after_s)
        _log.warning("shutdown_stalled", after_s=after_s, tasks=task_stacks())


@contextlib.asynccontextmanager
async def watching_shutdown(stop: asyncio.Event, after_s: float = 10.0) -> AsyncIterator[None]:
    """`watch_shutdown` as a task for the duration of the block."""
    task = asyncio.create_task(watch_shutdown(stop, after_s), name="shutdown-watchdog")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
