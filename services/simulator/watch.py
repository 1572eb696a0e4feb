"""Follows what the system publishes — creatives and models — for the live view and the report.

Reads the compacted `admuse.creatives` and `admuse.models` topics from the beginning, keeps the
latest record per key plus when each creative was first seen and when it went live or retired.
It only reads the system's outputs; it never writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from services.common.codec import CodecError, SchemaRegistry
from services.common.kafka import make_consumer
from services.common.settings import KafkaSettings
from services.common.topics import Topics

__all__ = ["CreativeWatch"]


@dataclass
class CreativeWatch:
    """Latest creatives and models of one campaign, updated in the background."""

    kafka: KafkaSettings
    campaign_id: str
    creatives: dict[str, dict[str, Any]] = field(default_factory=dict)
    first_seen: dict[str, float] = field(default_factory=dict)
    retired_at: dict[str, float] = field(default_factory=dict)
    models: list[dict[str, Any]] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    @property
    def generated(self) -> list[dict[str, Any]]:
        return [c for c in self.creatives.values() if c["origin"] == "generated"]

    @property
    def catalog(self) -> list[dict[str, Any]]:
        return [c for c in self.creatives.values() if c["origin"] == "catalog"]

    def counts(self) -> dict[str, int]:
        gen = self.generated
        return {
            "catalog_live": sum(c["status"] == "live" for c in self.catalog),
            "generated_admitted": len(gen),
            "generated_live": sum(c["status"] == "live" for c in gen),
            "retired": sum(c["status"] == "retired" for c in self.creatives.values()),
            "models": len(self.models),
        }

    async def start(self) -> None:
        topics = Topics.from_settings(self.kafka)
        consumer = make_consumer(
            self.kafka, topics.creatives.name, topics.models.name, group_id=None
        )
        await consumer.start()
        self._task = asyncio.create_task(self._follow(consumer, topics))

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _follow(self, consumer: Any, topics: Topics) -> None:
        registry = SchemaRegistry.load()
        creative, model = registry.codec("Creative"), registry.codec("ModelPublished")
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=500)
                for tp, records in batches.items():
                    for rec in records:
                        try:
                            if tp.topic == topics.creatives.name and rec.value is not None:
                                self.on_creative(creative.decode(rec.value))
                            elif tp.topic == topics.models.name and rec.value is not None:
                                m = model.decode(rec.value)
                                if m["campaign_id"] == self.campaign_id:
                                    self.models.append(m)
                        except CodecError:
                            continue
        finally:
            await consumer.stop()

    def on_creative(self, c: dict[str, Any]) -> None:
        if c["campaign_id"] != self.campaign_id:
            return
        cid = c["creative_id"]
        now = time.time()
        self.first_seen.setdefault(cid, now)
        if c["status"] == "retired":
            self.retired_at.setdefault(cid, now)
        self.creatives[cid] = c
