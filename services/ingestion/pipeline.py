"""The transform step: a batch of raw records → records to produce, and a tally.

Plain logic, no I/O: `Processor.process` decides for every raw record exactly one outcome —
forwarded (AdEvent v2 on admuse.events, keyed by the user pseudonym), dead-lettered (DeadLetter
on admuse.events.dlq with the reason), dropped for consent, or a duplicate — so the books
balance: consumed = forwarded + dead-lettered + consent-dropped + duplicates.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from services.common.codec import CodecError, RecordCodec
from services.ingestion.decoding import decode_raw
from services.ingestion.dedup import DedupWindow
from services.ingestion.encoding import AdEventEncoder
from services.ingestion.rejection import Rejection
from services.ingestion.validation import Event, Limits, consent_verdict, validate_event

__all__ = ["BatchResult", "Outgoing", "Processor", "RawRecord"]

SERVICE = "ingestion"
_MAX_DLQ_HEADER_BYTES = 64 * 1024  # keeps a dead letter under the broker's record size limit
_PSEUDONYM_CACHE = 100_000  # user_id → pseudonym, least recently used go first
_log = structlog.get_logger(__name__)


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
    """Decode, validate, pseudonymize, enforce consent, de-duplicate, encode."""

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
    ) -> None:
        self._event_codec = event_codec
        self._dlq_codec = dlq_codec
        self._secret = secret
        self.dedup = dedup
        self._events_topic = events_topic
        self._dlq_topic = dlq_topic
        self._max_event_bytes = max_event_bytes
        self._dlq_max = dlq_max_value_bytes
        self._limits = limits
        self._encoder = AdEventEncoder(event_codec)
        self._hmac = hmac.new(secret, digestmod=hashlib.sha256)
        # Users recur: remember their pseudonyms (in memory only, like the secret itself).
        self._pseudonymize = functools.lru_cache(maxsize=_PSEUDONYM_CACHE)(self._pseudonym)

    def _pseudonym(self, user_id: str) -> str:
        """`services.common.privacy.pseudonymize`, from a keyed HMAC state made once."""
        mac = self._hmac.copy()
        mac.update(user_id.encode("utf-8", "surrogatepass"))
        return mac.hexdigest()

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
        result = into if into is not None else BatchResult(seen=set(already))
        in_batch = result.seen
        for rec in records:
            result.consumed += 1
            try:
                outcome = self._one(rec, now_ms, in_batch, result)
            except Exception as exc:  # a bug must not stop the stream: keep the record
                _log.exception(
                    "ingestion failed on a record; dead-lettered as internal_error",
                    topic=rec.topic,
                    partition=rec.partition,
                    offset=rec.offset,
                )
                outcome = Rejection("internal_error", f"ingestion failed: {type(exc).__name__}")
            if isinstance(outcome, Rejection):
                result.dead_letters[outcome.reason] += 1
                result.outgoing.append(self._dead_letter(rec, outcome, now_ms))
        return result

    def commit(self, result: BatchResult, now_ms: int) -> None:
        """Record a committed batch's forwarded event_ids in the dedup window."""
        for event_id in result.forwarded_ids:
            self.dedup.add(event_id, now_ms)
        self.dedup.expire(now_ms)

    def _one(
        self, rec: RawRecord, now_ms: int, in_batch: set[str], result: BatchResult
    ) -> Rejection | None:
        decoded = decode_raw(rec.value, codec=self._event_codec, max_bytes=self._max_event_bytes)
        if isinstance(decoded, Rejection):
            return decoded
        result.formats[decoded.fmt] += 1
        checked = validate_event(decoded.value, now_ms=now_ms, limits=self._limits)
        if isinstance(checked, Rejection):
            return checked
        drop = consent_verdict(checked.fields["consent"])
        if drop is not None:
            result.dropped[drop] += 1
            return None
        event_id = checked.event_id
        if event_id in in_batch or self.dedup.is_duplicate(event_id, now_ms):
            result.duplicates += 1
            return None
        out = self._forward(checked, now_ms)
        if isinstance(out, Rejection):
            return out
        in_batch.add(event_id)
        result.forwarded_ids.append(event_id)
        result.outgoing.append(out)
        result.source_timestamps_ms.append(rec.timestamp)
        return None

    def _forward(self, event: Event, now_ms: int) -> Outgoing | Rejection:
        fields: dict[str, Any] = dict(event.fields)
        pseudonym = self._pseudonymize(fields["user_id"])
        fields["user_id"] = pseudonym
        fields["ingested_at"] = now_ms
        try:
            value = self._encoder.encode(fields)
        except CodecError as exc:
            return Rejection(exc.reason, f"valid event does not encode as AdEvent: {exc}")
        return Outgoing(self._events_topic, pseudonym.encode(), value, now_ms)

    def _dead_letter(self, rec: RawRecord, why: Rejection, now_ms: int) -> Outgoing:
        original = rec.value
        truncated = original is not None and len(original) > self._dlq_max
        headers = [{"key": k, "value": v} for k, v in (rec.headers or ())]
        key = rec.key
        note = ""
        if sum(len(h["key"]) + len(h["value"] or b"") for h in headers) > _MAX_DLQ_HEADER_BYTES:
            headers, note = [], " (original headers over 64 KiB were not kept)"
        if key is not None and len(key) > _MAX_DLQ_HEADER_BYTES:
            key, note = None, note + " (original key over 64 KiB was not kept)"
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
