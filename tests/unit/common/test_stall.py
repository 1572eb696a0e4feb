from __future__ import annotations

import asyncio

from structlog.testing import capture_logs

from services.common.stall import task_stacks, watching_shutdown
from tests.polling import eventually


async def _stuck_inner(never: asyncio.Event) -> None:
    await never.wait()


async def _stuck_outer(never: asyncio.Event) -> None:
    await _stuck_inner(never)


async def test_task_stacks_follow_the_await_chain_to_what_blocks() -> None:
    never = asyncio.Event()
    task = asyncio.create_task(_stuck_outer(never), name="stuck")
    await asyncio.sleep(0)
    stacks = task_stacks()
    task.cancel()
    (chain,) = [v for k, v in stacks.items() if k.startswith("stuck#")]
    assert "_stuck_outer" in chain[0] and "_stuck_inner" in chain[1]
    assert any("in wait" in line for line in chain[2:])  # Event.wait: what it is blocked on


async def test_a_stop_that_stalls_is_logged_with_the_stuck_task_and_a_quick_one_is_not() -> None:
    stop, never = asyncio.Event(), asyncio.Event()
    with capture_logs() as logs:
        async with watching_shutdown(stop, after_s=0.05):
            await asyncio.sleep(0.15)  # 3x the stall time, no stop requested: nothing to report
        assert logs == []
        async with watching_shutdown(stop, after_s=0.05):
            stuck = asyncio.create_task(_stuck_outer(never), name="stuck")
            stop.set()
            await eventually(
                lambda: any(e["event"] == "shutdown_stalled" for e in logs),
                5,
                "the stall to be reported",
                0.01,
            )
            stuck.cancel()
    stalled = [e for e in logs if e["event"] == "shutdown_stalled"]
    assert any(k.startswith("stuck#") for k in stalled[0]["tasks"])
