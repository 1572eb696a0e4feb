"""What the trainer knows from Kafka: campaigns, creatives, buffered rewards, and when each
campaign is due to retrain. No torch here, so `admuse train` can check its input quickly."""

from __future__ import annotations

from collections import Counter
from typing import Any

import structlog
from aiokafka import ConsumerRecord

from services.common.codec import CodecError, RecordCodec, SchemaRegistry
from services.common.topics import Topics
from services.trainer.buffer import RewardRow, TrainingBuffer
from services.trainer.settings import Settings
from services.trainer.space import CreativeSpace, EncodingError

__all__ = ["TrainerState"]

log = structlog.get_logger("trainer")


class TrainerState:
    """What the trainer knows: campaigns, creatives, the buffer and the retrain counters."""

    def __init__(
        self, settings: Settings, registry: SchemaRegistry, topics: Topics, buffer: TrainingBuffer
    ) -> None:
        self.settings = settings
        self.topics = topics
        self.buffer = buffer
        self.campaigns: dict[str, dict[str, Any]] = {}
        self.creatives: dict[str, dict[str, Any]] = {}
        self.new_rewards: Counter[str] = Counter()
        self.last_trained: dict[str, float] = {}
        self.rejected: Counter[str] = Counter()
        self.unshown: Counter[str] = Counter()  # per campaign: rewards of decisions never shown
        self._codecs: dict[str, RecordCodec] = {
            topics.campaigns.name: registry.codec("Campaign"),
            topics.creatives.name: registry.codec("Creative"),
            topics.rewards.name: registry.codec("Reward"),
        }

    def apply(self, msg: ConsumerRecord) -> None:
        """Take one record in; bad input is counted and logged, never raised."""
        if msg.topic == self.topics.rewards.name:
            self.buffer.note_offset(msg.topic, msg.partition, msg.offset)
        if msg.value is None:  # tombstone on a compacted topic: forget the key
            key = (msg.key or b"").decode("utf-8", "replace")
            known = self.campaigns if msg.topic == self.topics.campaigns.name else self.creatives
            known.pop(key, None)
            return
        try:
            rec = self._codecs[msg.topic].decode(msg.value)
            if msg.topic == self.topics.rewards.name:
                if not rec.get("shown", True):  # never shown: not an impression, no row
                    self.unshown[rec["campaign_id"]] += 1
                elif self.buffer.add(rec["campaign_id"], RewardRow.from_record(rec)):
                    self.new_rewards[rec["campaign_id"]] += 1
            elif msg.topic == self.topics.campaigns.name:
                CreativeSpace.from_attributes(rec["attributes"])  # refuse unusable spaces
                self.campaigns[rec["campaign_id"]] = rec
            else:
                self.creatives[rec["creative_id"]] = rec
        except (CodecError, EncodingError, ValueError, KeyError, TypeError) as exc:
            reason = getattr(exc, "reason", type(exc).__name__)
            self.rejected[reason] += 1
            log.warning(
                "record skipped",
                topic=msg.topic,
                partition=msg.partition,
                offset=msg.offset,
                reason=reason,
                error=str(exc),
            )

    def due(self, now: float) -> list[str]:
        """Campaigns whose retrain trigger fired and that have enough data."""
        s = self.settings
        out = []
        for cid, new in self.new_rewards.items():
            if new <= 0 or cid not in self.campaigns:
                continue
            elapsed = now - self.last_trained.setdefault(cid, now)
            if new < s.retrain_every_rewards and elapsed < s.retrain_every_minutes * 60:
                continue
            rows = self.buffer.rows(cid)
            if len(rows) >= s.min_rows and sum(r.reward > 0 for r in rows) >= s.min_positives:
                out.append(cid)
        return out
