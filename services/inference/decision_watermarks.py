"""Decision watermarks: how far this replica's decisions are complete in admuse.decisions.

A `Watermark` record (docs/contracts.md "Watermarks") with source `inference` goes into every
partition of admuse.decisions, after the decisions it covers are acknowledged. Its one claim
(input = this replica's number, of `replicas`) is the decided_at up to which every decision
of this replica is written: one millisecond before the oldest decision still unsent in the
decision log (memory, in flight or spool), or before now when nothing is, so an idle replica
advances. Decisions get decided_at from the wall clock right before they are queued, in the
same step of the event loop, so none with an earlier decided_at can still arrive.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from services.common.watermark import DECIDED, WatermarkCodec
from services.inference.metrics import Metrics

__all__ = ["DecisionWatermarks"]


class DecisionWatermarks:
    """Writes this replica's decision watermark to every decisions partition, at most every
    `interval_s` (the decision log says when and what)."""

    def __init__(
        self,
        codec: WatermarkCodec,
        topic: str,
        producer_name: str,
        metrics: Metrics,
        *,
        replica: int = 0,
        replicas: int = 1,
        interval_s: float = 0.2,
    ) -> None:
        if not 0 <= replica < replicas:
            raise ValueError(f"replica {replica} is not in 0..{replicas - 1}")
        self._codec = codec
        self._topic = topic
        self._name = producer_name
        self._metrics = metrics
        self._replica = replica
        self._replicas = replicas
        self.interval_s = interval_s
        self._last = float("-inf")
        self.claimed_ms: int | None = None

    def due(self) -> bool:
        return time.monotonic() - self._last >= self.interval_s

    async def emit(self, producer: Any, claim_ms: int) -> None:
        """Send the claim to every partition and wait for the acknowledgements."""
        self._last = time.monotonic()  # a failed try waits an interval too
        value = self._codec.encode(
            self._name, self._replicas, {self._replica: claim_ms}, int(time.time() * 1000),
            source=DECIDED,
        )  # fmt: skip
        partitions = sorted(await producer.partitions_for(self._topic))
        sent = [
            await producer.send(self._topic, value, key=self._name.encode(), partition=p)
            for p in partitions
        ]
        await asyncio.gather(*sent)
        self.claimed_ms = claim_ms
        self._metrics.decision_watermark.set(claim_ms / 1000)
