"""Watermarks: control records that carry event time in-band through a data topic.

A `Watermark` record (schemas/Watermark.v1.avsc) sits in a partition of a data topic
(admuse.events, admuse.decisions) among the data records. It says, for each *input* it
claims (ingestion: a partition of admuse.events.raw), that every record of that input with
event time <= ``watermark_ms`` which belongs in this partition comes *before* it. Because it
travels in order with the data, a reader that has read up to it knows that much — no reader
guesses completeness from a wall clock or from offsets.

Readers tell data from control by the writer schema named in the Avro header
(`is_watermark`), merge every claim seen in a partition with `PartitionWatermark` (largest
claim per input; the partition's watermark is the least over all inputs, unknown until every
input has a claim), and take the least over partitions for anything that needs all of them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Gauge

from services.common.codec import MAGIC, RecordCodec, SchemaRegistry

__all__ = [
    "DECIDED",
    "END_OF_TIME",
    "LIVE",
    "REPLAY_POLICY",
    "WATERMARK",
    "PartitionWatermark",
    "WatermarkCodec",
    "WatermarkGauges",
    "clock_of",
    "decision_clock_of",
    "least",
]

WATERMARK = "Watermark"  # record name in schemas/
LIVE = "ingestion"  # the clock of live events (ingestion's own claims)
DECIDED = "inference"  # the clock of live decisions in admuse.decisions (by decided_at)
END_OF_TIME = 2**62  # what a finished source claims: everything it had is written
REPLAY_POLICY = "replay"  # Decision.policy of replayed decisions; their clock is named below


def clock_of(policy: str, policy_version: str) -> str:
    """The clock a decision's window closes by: a replayed log's own, else the live one."""
    return f"replay:{policy_version}" if policy == REPLAY_POLICY else LIVE


def decision_clock_of(policy: str, policy_version: str) -> str:
    """The clock that says how far decisions like this one are complete in admuse.decisions:
    a replayed log's own, else inference's (claims by decided_at)."""
    return clock_of(policy, policy_version) if policy == REPLAY_POLICY else DECIDED


class WatermarkCodec:
    """Encode Watermark records and recognise them among other records of a topic."""

    def __init__(self, registry: SchemaRegistry) -> None:
        self.codec: RecordCodec = registry.codec(WATERMARK)
        self._headers = {MAGIC + v.fingerprint for v in registry.versions(WATERMARK)}

    def is_watermark(self, value: bytes | bytearray | memoryview | None) -> bool:
        """Whether a record's value is a Watermark (by its Avro single-object header)."""
        return value is not None and bytes(value[:10]) in self._headers

    def encode(
        self,
        producer: str,
        inputs: int,
        claims: Mapping[int, int],
        emitted_at_ms: int,
        source: str = LIVE,
    ) -> bytes:
        return self.codec.encode(
            {
                "source": source,
                "producer": producer,
                "inputs": inputs,
                "claims": [{"input": i, "watermark_ms": int(w)} for i, w in sorted(claims.items())],
                "emitted_at": int(emitted_at_ms),
            }
        )

    def decode(self, value: bytes) -> dict[str, Any]:
        """The record (raises `CodecError` for bytes that are not a valid Watermark)."""
        return self.codec.decode(value)


@dataclass
class PartitionWatermark:
    """How far one partition of a data topic is complete, from the Watermarks read in it."""

    inputs: int | None = None
    claims: dict[int, int] = field(default_factory=dict)
    emitted_at_ms: int | None = None

    def merge(self, record: Mapping[str, Any]) -> int | None:
        """Fold in one decoded Watermark record; returns the partition's watermark."""
        self.merge_claims(int(record["inputs"]), _claims(record["claims"]))
        self.emitted_at_ms = int(record["emitted_at"])
        return self.value

    def merge_claims(self, inputs: int, claims: Iterable[tuple[int, int]]) -> None:
        if inputs <= 0:
            return
        self.inputs = inputs if self.inputs is None else max(self.inputs, inputs)
        for i, w in claims:
            if 0 <= i < self.inputs:
                self.claims[i] = max(self.claims.get(i, w), w)

    @property
    def value(self) -> int | None:
        """Least claim over every input; None until each input has one."""
        if self.inputs is None or len(self.claims) < self.inputs:
            return None
        return min(self.claims[i] for i in range(self.inputs))


def least(marks: Mapping[int, int | None], partitions: int) -> int | None:
    """The watermark of a whole topic: least over partitions 0..partitions-1; None while
    any of them is unknown."""
    values = [marks.get(p) for p in range(partitions)]
    if any(v is None for v in values):
        return None
    return min(values)  # type: ignore[type-var]


def _claims(items: Iterable[Mapping[str, Any]]) -> list[tuple[int, int]]:
    return [(int(c["input"]), int(c["watermark_ms"])) for c in items]


class WatermarkGauges:
    """``<prefix>_watermark_seconds{partition}`` and ``<prefix>_watermark_lag_seconds`` (wall
    clock minus watermark, computed when scraped, so a stuck watermark shows a growing lag)."""

    def __init__(self, registry: CollectorRegistry, prefix: str, what: str) -> None:
        self._marks: dict[str, float] = {}
        self._value = Gauge(
            f"{prefix}_watermark_seconds",
            f"Watermark (event time, epoch seconds) of {what}, per partition.",
            ["partition"],
            registry=registry,
        )
        self._lag = Gauge(
            f"{prefix}_watermark_lag_seconds",
            f"Wall clock minus the watermark of {what}, per partition.",
            ["partition"],
            registry=registry,
        )

    def set(self, partition: int | str, mark_ms: int) -> None:
        label = str(partition)
        if label not in self._marks:
            self._lag.labels(label).set_function(lambda: time.time() - self._marks[label])
        self._marks[label] = mark_ms / 1000
        self._value.labels(label).set(mark_ms / 1000)
