"""Waiting for a condition in tests: poll it with a deadline, never a bare sleep."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["eventually", "wait_until"]


async def eventually(
    check: Callable[[], bool | Awaitable[bool]],
    timeout_s: float,
    what: str,
    every_s: float = 0.2,
) -> None:
    """Poll `check` (plain or async) until it is true; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        await asyncio.sleep(every_s)


def wait_until(check: Callable[[], Any], timeout_s: float, what: str, every_s: float = 0.25) -> Any:
    """`eventually` for code without an event loop (a subprocess coming up); returns the
    check's first truthy result."""
    deadline = time.monotonic() + timeout_s
    while not (result := check()):
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(every_s)
    return result
