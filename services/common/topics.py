"""Every Kafka topic of admuse, declared once (DESIGN.md §3).

Erasure bound (README "Erasure"): the topics that carry a user's raw id or pseudonym —
events.raw, events, erasure (and the features worker's events-by-decision repartition topic)
— keep records for at most `USER_DATA_RETENTION_MS` (one day); long-lived topics (decisions,
rewards, stats, dead letters) carry no user identity at all.

Use `Topics.from_settings(kafka_settings)` to get the names with the configured prefix; never
write a topic name as a string literal elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from services.common.settings import KafkaSettings

__all__ = ["DAY_MS", "USER_DATA_RETENTION_MS", "TopicSpec", "Topics"]

DAY_MS = 24 * 3600 * 1000
USER_DATA_RETENTION_MS = DAY_MS  # the erasure bound: user-linked records live at most this long


@dataclass(frozen=True)
class TopicSpec:
    """A topic: name, partitions, cleanup policy, retention, and what its records are."""

    name: str
    partitions: int
    cleanup_policy: Literal["delete", "compact"]
    key: str
    value: str | None  # Avro record name in schemas/, None for free-form (raw input)
    retention_ms: int | None = None  # None: broker default; -1: forever
    extra: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def configs(self) -> dict[str, str]:
        """Topic configs to create it with (and to verify against)."""
        out = {"cleanup.policy": self.cleanup_policy, **self.extra}
        if self.retention_ms is not None:
            out["retention.ms"] = str(self.retention_ms)
        return out

    def prefixed(self, prefix: str) -> TopicSpec:
        return replace(self, name=f"{prefix}{self.name}") if prefix else self


_COMPACT = MappingProxyType({"min.cleanable.dirty.ratio": "0.1", "segment.ms": str(3600_000)})


@dataclass(frozen=True)
class Topics:
    """The topic registry. Attribute names are stable; `.name` carries any prefix."""

    events_raw: TopicSpec = TopicSpec(
        "admuse.events.raw", 4, "delete", "anything", None, retention_ms=USER_DATA_RETENTION_MS
    )
    events: TopicSpec = TopicSpec(
        "admuse.events",
        4,
        "delete",
        "user pseudonym",
        "AdEvent",
        retention_ms=USER_DATA_RETENTION_MS,
    )
    events_dlq: TopicSpec = TopicSpec(
        "admuse.events.dlq", 1, "delete", "original key", "DeadLetter", retention_ms=30 * DAY_MS
    )
    decisions: TopicSpec = TopicSpec(
        "admuse.decisions", 4, "delete", "decision_id", "Decision", retention_ms=30 * DAY_MS
    )
    rewards: TopicSpec = TopicSpec(
        "admuse.rewards", 4, "delete", "decision_id", "Reward", retention_ms=30 * DAY_MS
    )
    stats: TopicSpec = TopicSpec(
        "admuse.stats", 3, "compact", "campaign/segment/creative", "CreativeStats", extra=_COMPACT
    )
    campaigns: TopicSpec = TopicSpec(
        "admuse.campaigns", 1, "compact", "campaign_id", "Campaign", extra=_COMPACT
    )
    creatives: TopicSpec = TopicSpec(
        "admuse.creatives", 1, "compact", "creative_id", "Creative", extra=_COMPACT
    )
    models: TopicSpec = TopicSpec(
        "admuse.models", 1, "compact", "model name", "ModelPublished", extra=_COMPACT
    )
    erasure: TopicSpec = TopicSpec(
        "admuse.erasure",
        1,
        "delete",
        "user pseudonym",
        "ErasureRequest",
        retention_ms=USER_DATA_RETENTION_MS,
    )

    @classmethod
    def with_prefix(cls, prefix: str = "") -> Topics:
        base = cls()
        return cls(**{f.name: getattr(base, f.name).prefixed(prefix) for f in fields(cls)})

    @classmethod
    def from_settings(cls, kafka: KafkaSettings) -> Topics:
        return cls.with_prefix(kafka.topic_prefix)

    def __iter__(self) -> Iterator[TopicSpec]:
        return (getattr(self, f.name) for f in fields(self))

    def by_name(self, name: str) -> TopicSpec:
        for spec in self:
            if spec.name == name:
                return spec
        raise KeyError(f"unknown topic {name!r}; declared: {[s.name for s in self]}")
