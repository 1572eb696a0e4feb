"""Adapter over an aiokafka internal (0.14): a paced metadata refresh while no broker answers.

aiokafka's client refreshes metadata in a background task that, when no broker answers,
reports the failure at once; a producer holding batches for a partition whose leader is
unknown asks again at once, so while the broker is away its sender spins — tens of thousands
of refused connections (and log records) per second, a core at 100 %. Every producer made by
`services.common.kafka.make_producer` gets its client's `_metadata_update` wrapped here so a
failed refresh waits, with jittered exponential back-off up to `max_s`, before it reports;
a successful one resets the back-off. tests/unit/common/test_kafka_pacing.py fails when an
aiokafka upgrade moves or renames what this relies on.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["pace_metadata_updates"]


def pace_metadata_updates(
    client: Any,
    *,
    first_s: float = 0.1,
    max_s: float = 2.0,
    rng: random.Random | None = None,
) -> None:
    """Wrap `client._metadata_update` (an `aiokafka.client.AIOKafkaClient`) in place."""
    original: Callable[[Any, Any], Awaitable[bool]] = client._metadata_update
    draw = rng or random.Random()
    failures = 0

    async def paced(cluster_metadata: Any, topics: Any) -> bool:
        nonlocal failures
        updated = await original(cluster_metadata, topics)
        if updated:
            failures = 0
        else:
            delay = min(max_s, first_s * 2 ** min(failures, 20))
            failures += 1
            await asyncio.sleep(draw.uniform(delay / 2, delay))
        return updated

    client._metadata_update = paced
