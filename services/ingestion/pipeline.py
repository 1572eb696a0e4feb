"""The transform step: a batch of raw records → records to produce, and a tally.

Plain logic, no I/O: `Processor.process` (the per-record work of `transform.Transform`,
then `settle`: de-duplication, dead letters, the tally) decides for every raw record exactly
one outcome — forwarded (AdEvent v2 on admuse.events, keyed by the user pseudonym),
dead-lettered (DeadLetter on admuse.events.dlq with the reason), dropped for consent, or a
duplicate — so the books balance: consumed = forwarded + dead-lettered + consent-dropped +
duplicates.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from services.common.codec import CodecError, RecordCodec
from services.ingestion.dedup import DedupWindow
from services.ingestion.dlq_identity import protect_key, protect_value, redaction_token
from services.ingestion.rejection import Rejection
from services.ingestion.transform import Transform, Transformed, TransformSpec
from services.ingestion.validation import Limits

__all__ = ["BatchResult", "Outgoing", "Processor", "RawRecord"]

SERVICE = "ingestion"
_MAX_DLQ_HEADER_BYTES = 64 * 1024  # keeps a dead letter under the broker's record size limit


class RawRecord(Protocol):
    """What the processor reads from a consumed record (aiokafka's ConsumerRecord fits)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes | None]]
    timestamp: int


@dataclass(slots=True)  # not frozen: one is made per event, and frozen init costs 3x
class Outgoing:
    topic: str
    key: bytes | None
    value: bytes
    timestamp_ms: int
    # A forwarded event carries its raw record's headers (trace-id, app, ...) unchanged.
    headers: Sequence[tuple[str, bytes | None]] = ()
    partition: int | None = None  # None: by key, as the producer's partitioner chooses


@dataclass(slots=True)
class BatchResult:
    outgoing: list[Outgoing] = field(default_factory=list)
    forwarded_ids: list[str] = field(default_factory=list)
    consumed: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    formats: Counter[str] = field(default_factory=Counter)
    source_timestamps_ms: list[int] = field(default_factory=list)
    seen: set[str] = field(default_factory=set, repr=False)  # forwarded or committing ids

    @property
    def forwarded(self) -> int:
        return len(self.forwarded_ids)


class Processor:
    """Settle transformed batches: de-duplicate, dead-letter, tally.

    `process` runs the whole step in this process; the stream instead runs the `Transform`
    part in worker processes (`TransformPool`) and hands the outcomes to `settle`. Either way
    every raw record gets exactly one outcome, in order."""

    def __init__(
        self,
        *,
        event_codec: RecordCodec,
        dlq_codec: RecordCodec,
        secret: bytes,
        dedup: DedupWindow,
        events_topic: str,
        dlq_topic: str,
        max_event_bytes: int,
        dlq_max_value_bytes: int,
        limits: Limits,
        carry_headers: frozenset[str] = frozenset(),
    ) -> None:
        self.spec = TransformSpec(secret, max_event_bytes, limits)
        self._carry = carry_headers
        self.transform = Transform(self.spec, event_codec)
        self._event_codec = event_codec
        self._dlq_codec = dlq_codec
        self.dedup = dedup
        self._events_topic = events_topic
        self._dlq_topic = dlq_topic
        self._dlq_max = dlq_max_value_bytes

    def process(
        self,
        records: Iterable[RawRecord],
        now_ms: int,
        already: Iterable[str] = (),
        into: BatchResult | None = None,
    ) -> BatchResult:
        """Decide every record of a batch. The dedup window is NOT updated here: call
        `commit(result, now_ms)` once the batch's transaction committed. `already`: event_ids
        forwarded by a batch still committing, counted as seen. `into`: a result to extend
        (a batch processed in slices)."""
        records = list(records)
        done = self.transform([rec.value for rec in records], now_ms)
        return self.settle(records, done, now_ms, already, into)

    def settle(
        self,
        records: Sequence[RawRecord],
        done: Transformed,
        now_ms: int,
        already: Iterable[str] = (),
        into: BatchResult | None = None,
    ) -> BatchResult:
        """`process` for records whose outcomes `done` were computed elsewhere (in order)."""
        if len(done.outcomes) != len(records):
            raise ValueError(f"{len(done.outcomes)} outcomes for {len(records)} records")
        result = into if into is not None else BatchResult(seen=set(already))
        result.formats.update(done.formats)
        in_batch = result.seen
        events_topic, carry = self._events_topic, self._carry
        for rec, outcome in zip(records, done.outcomes, strict=True):
            result.consumed += 1
            if type(outcome) is tuple:
                event_id, key, value = outcome
                if event_id in in_batch or self.dedup.is_duplicate(event_id, now_ms):
                    result.duplicates += 1
                    continue
                in_batch.add(event_id)
                result.forwarded_ids.append(event_id)
                headers = rec.headers and [h for h in rec.headers if h[0].lower() in carry]
                result.outgoing.append(Outgoing(events_topic, key, value, now_ms, headers or ()))
                result.source_timestamps_ms.append(rec.timestamp)
            elif isinstance(outcome, Rejection):
                result.dead_letters[outcome.reason] += 1
                result.outgoing.append(self._dead_letter(rec, outcome, now_ms))
            else:
                result.dropped[outcome] += 1
        return result

    def commit(self, result: BatchResult, now_ms: int) -> None:
        """Record a committed batch's forwarded event_ids in the dedup window."""
        for event_id in result.forwarded_ids:
            self.dedup.add(event_id, now_ms)
        self.dedup.expire(now_ms)

    def _dead_letter(self, rec: RawRecord, why: Rejection, now_ms: int) -> Outgoing:
        # No user identity in a dead letter (dlq_identity): user ids redacted, key not kept.
        original, note = protect_value(rec.value, redaction_token, self._event_codec)
        key, key_note = protect_key(rec.key)
        note += key_note
        truncated = original is not None and len(original) > self._dlq_max
        headers = [{"key": k, "value": v} for k, v in (rec.headers or ())]
        if sum(len(h["key"]) + len(h["value"] or b"") for h in headers) > _MAX_DLQ_HEADER_BYTES:
            headers, note = [], note + " (original headers over 64 KiB were not kept)"
        record = {
            "original_key": key,
            "original_value": original[: self._dlq_max] if truncated else original,
            "original_headers": headers,
            "source_topic": rec.topic,
            "source_partition": rec.partition,
            "source_offset": rec.offset,
            "reason": why.reason,
            "message": (why.message + note).encode("utf-8", "backslashreplace").decode("utf-8"),
            "field": why.field,
            "service": SERVICE,
            "failed_at": now_ms,
            "oversize_truncated": truncated,
        }
        try:
            value = self._dlq_codec.encode(record)
        except CodecError:  # e.g. an odd header: keep the bytes, lose the headers
            record["original_headers"] = []
            record["message"] += " (original headers could not be kept)"
            value = self._dlq_codec.encode(record)
        return Outgoing(self._dlq_topic, key, value, now_ms)
