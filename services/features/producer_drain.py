"""Adapter over faust's producer buffer: a flush that really drains it before a commit.

faust writes table changes (the join's changelog) into an in-memory buffer that one task
hands to aiokafka, and before committing source offsets it calls ``producer.flush()``. In
faust-streaming 0.15 that flush (``ProducerBuffer.flush_atmost``) gives up as soon as 0.1 s
pass without a message leaving the buffer, and it does not count the message the task is
handing over at that moment. Under load the commit then goes ahead with changelog writes
still in memory: a SIGKILL at that point loses a decision's join state while its offset is
committed, so its click waits forever (the kill test's rare "one decision without a reward").

`drain_before_commit` replaces the buffer's ``flush`` with one that waits until the buffer is
empty and no hand-over is in flight; aiokafka's own flush, which faust calls next, then
covers everything. It touches two private members of the buffer (``_send_pending``, wrapped
before the buffer's task starts, and ``size``); tests/unit/features/test_producer_drain.py
fails if a faust upgrade changes them or fixes the flush upstream.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["drain_before_commit"]

_POLL_S = 0.005


class _Drain:
    def __init__(self, buffer: Any) -> None:
        self._buffer = buffer
        self._in_flight = 0
        self._send = buffer._send_pending
        buffer._send_pending = self._send_pending
        buffer.flush = self.flush

    async def _send_pending(self, fut: Any) -> None:
        self._in_flight += 1
        try:
            await self._send(fut)
        finally:
            self._in_flight -= 1

    async def flush(self) -> None:
        """Return once every buffered message was handed to the Kafka client."""
        while self._buffer.size or self._in_flight:
            if self._buffer.state != "running":
                raise RuntimeError(
                    f"cannot flush: the producer buffer is {self._buffer.state} with "
                    f"{self._buffer.size + self._in_flight} message(s) not handed to Kafka"
                )
            await asyncio.sleep(_POLL_S)


def drain_before_commit(producer: Any) -> Any:
    """Make `producer`'s buffer flush completely (call before the producer starts)."""
    _Drain(producer.buffer)
    return producer
