"""faust's producer buffer: its own flush returns with messages still buffered when the
hand-over stalls for 0.1 s; the adapter's flush waits until every message was handed over.
Fails loudly if a faust upgrade changes the members the adapter wraps, or fixes the flush."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

from faust.transport.producer import ProducerBuffer

from services.features.producer_drain import drain_before_commit
from tests.polling import eventually

STALL_S = 0.3


def _message(handed: list[int], n: int) -> Any:
    async def publish_message(_fut: Any, wait: bool = False) -> None:
        await asyncio.sleep(STALL_S)  # the client is slow to take it (metadata, full queue)
        handed.append(n)

    return SimpleNamespace(
        message=SimpleNamespace(channel=SimpleNamespace(publish_message=publish_message))
    )


async def _buffer(drain: bool) -> ProducerBuffer:
    buffer = ProducerBuffer()
    buffer.app = SimpleNamespace(conf=SimpleNamespace(producer_threaded=False))
    if drain:
        drain_before_commit(SimpleNamespace(buffer=buffer))
    await buffer.start()
    return buffer


async def test_faust_flush_returns_with_messages_still_buffered() -> None:
    handed: list[int] = []
    buffer = await _buffer(drain=False)
    try:
        for n in range(3):
            buffer.put(_message(handed, n))
        await buffer.flush()
        # upstream behaviour the adapter exists for: if this fails, faust fixed its flush
        assert len(handed) < 3
    finally:
        await eventually(lambda: len(handed) == 3, 5, "the rest handed over", 0.01)
        await buffer.stop()


async def test_drained_flush_waits_until_every_message_was_handed_over() -> None:
    handed: list[int] = []
    buffer = await _buffer(drain=True)
    try:
        started = time.monotonic()
        for n in range(3):
            buffer.put(_message(handed, n))
        await buffer.flush()
        assert handed == [0, 1, 2]
        assert buffer.size == 0
        assert time.monotonic() - started >= 3 * STALL_S * 0.9
    finally:
        await buffer.stop()
