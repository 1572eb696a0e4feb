"""The transform step: one outcome per raw record, books balance, pseudonyms, dead letters."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.codec import SchemaRegistry
from services.common.privacy import pseudonymize
from services.ingestion.dedup import DedupWindow
from services.ingestion.pipeline import BatchResult, Processor
from services.ingestion.validation import Limits

REGISTRY = SchemaRegistry.load()
EVENTS = REGISTRY.codec("AdEvent")
DLQ = REGISTRY.codec("DeadLetter")
SECRET = b"unit-secret"
NOW = 1_795_000_000_000


@dataclass
class Rec:
    value: bytes | None
    offset: int = 0
    key: bytes | None = None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)
    topic: str = "raw"
    partition: int = 2
    timestamp: int = NOW - 50


def processor(dlq_max: int = 10_000) -> Processor:
    return Processor(
        event_codec=EVENTS,
        dlq_codec=DLQ,
        secret=SECRET,
        dedup=DedupWindow(3_600_000, 100_000),
        events_topic="events",
        dlq_topic="dlq",
        max_event_bytes=4096,
        dlq_max_value_bytes=dlq_max,
        limits=Limits(),
    )


def raw(
    event_id: str = "e1", user: str = "app-user-42", consent: object = True, **kw: object
) -> bytes:
    ev = {
        "event_id": event_id,
        "type": "click",
        "occurred_at": NOW - 1000,
        "campaign_id": "c",
        "user_id": user,
        "consent": {"personalization": consent},
        **kw,
    }
    return json.dumps(ev).encode()


def balanced(r: BatchResult) -> bool:
    return r.consumed == (
        r.forwarded + sum(r.dead_letters.values()) + sum(r.dropped.values()) + r.duplicates
    )


def test_forwarded_event_is_pseudonymized_avro_keyed_by_pseudonym() -> None:
    r = processor().process([Rec(raw())], NOW)
    assert r.forwarded == 1 and len(r.outgoing) == 1
    out = r.outgoing[0]
    pseudonym = pseudonymize(SECRET, "app-user-42")
    assert out.topic == "events" and out.key == pseudonym.encode()
    event = EVENTS.decode(out.value)
    assert event["user_id"] == pseudonym and event["ingested_at"].timestamp() * 1000 == NOW
    assert b"app-user-42" not in out.value and b"app-user-42" not in out.key


def test_dead_letter_keeps_original_bytes_headers_and_source() -> None:
    value = raw(type="purchase")
    r = processor().process(
        [Rec(value, offset=77, key=b"k", headers=[("h", b"v"), ("n", None)])], NOW
    )
    assert dict(r.dead_letters) == {"schema_violation": 1}
    out = r.outgoing[0]
    assert out.topic == "dlq" and out.key is None  # keys are not kept (often a raw user id)
    dl = DLQ.decode(out.value)
    token = re.search(rb"redacted-[0-9a-f]{12}", dl["original_value"])
    assert token and dl["original_value"] == value.replace(b"app-user-42", token.group())
    assert dl["original_key"] is None and b"app-user-42" not in out.value
    assert "user_id redacted" in dl["message"] and "key of 1 bytes not kept" in dl["message"]
    assert pseudonymize(SECRET, "app-user-42").encode() not in out.value
    assert dl["original_headers"] == [{"key": "h", "value": b"v"}, {"key": "n", "value": None}]
    assert (dl["source_topic"], dl["source_partition"], dl["source_offset"]) == ("raw", 2, 77)
    assert dl["field"] == "type" and "purchase" in dl["message"]
    assert dl["service"] == "ingestion" and not dl["oversize_truncated"]


def test_oversize_dead_letter_is_cut_and_flagged() -> None:
    value = b'{"pad": "' + b"x" * 20_000 + b'"}'
    r = processor(dlq_max=1024).process([Rec(value)], NOW)
    dl = DLQ.decode(r.outgoing[0].value)
    assert dl["reason"] == "oversize" and dl["oversize_truncated"]
    assert dl["original_value"] == value[:1024]


def test_consent_drops_are_counted_not_dead_lettered() -> None:
    r = processor().process([Rec(raw("a", consent=False)), Rec(raw("b", consent=None))], NOW)
    assert r.outgoing == [] and dict(r.dropped) == {"consent_denied": 1, "consent_missing": 1}
    assert balanced(r)


def test_duplicates_in_batch_and_after_commit() -> None:
    p = processor()
    first = p.process([Rec(raw("a")), Rec(raw("a")), Rec(raw("b"))], NOW)
    assert first.forwarded_ids == ["a", "b"] and first.duplicates == 1
    again = p.process([Rec(raw("a"))], NOW + 1)
    assert again.forwarded == 1  # batch not committed yet: not a duplicate
    p.commit(first, NOW)
    after = p.process([Rec(raw("a")), Rec(raw("c"))], NOW + 2)
    assert after.forwarded_ids == ["c"] and after.duplicates == 1


def test_consent_dropped_id_may_come_back_with_consent() -> None:
    p = processor()
    r = p.process([Rec(raw("a", consent=False)), Rec(raw("a"))], NOW)
    assert r.forwarded_ids == ["a"] and dict(r.dropped) == {"consent_denied": 1}


def test_avro_input_forwarded() -> None:
    value = REGISTRY.codec("AdEvent", 1).encode(
        {
            "event_id": "av",
            "type": "conversion",
            "occurred_at": NOW - 5,
            "campaign_id": "c",
            "user_id": "app-user-7",
            "consent": {"personalization": True},
            "value": 9.5,
        }
    )
    r = processor().process([Rec(value)], NOW)
    assert r.forwarded_ids == ["av"] and dict(r.formats) == {"avro": 1}
    assert EVENTS.decode(r.outgoing[0].value)["value"] == 9.5


_garbage = st.one_of(
    st.binary(max_size=200),
    st.builds(raw, st.text(max_size=8), st.text(max_size=8), st.none() | st.booleans()),
    st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=5), max_size=5).map(
        lambda d: json.dumps(d).encode()
    ),
    st.none(),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_garbage, max_size=30))
def test_books_balance_on_anything(values: list[bytes | None]) -> None:
    r = processor().process([Rec(v, offset=i) for i, v in enumerate(values)], NOW)
    assert r.consumed == len(values) and balanced(r)
    assert len(r.outgoing) == r.forwarded + sum(r.dead_letters.values())
    for out in r.outgoing:
        (EVENTS if out.topic == "events" else DLQ).decode(out.value)


def test_ids_of_a_batch_still_committing_count_as_seen() -> None:
    p = processor()
    first = p.process([Rec(raw("e1")), Rec(raw("e2"))], NOW)
    second = p.process([Rec(raw("e2")), Rec(raw("e3"))], NOW, already=first.forwarded_ids)
    assert first.forwarded_ids == ["e1", "e2"]
    assert second.forwarded_ids == ["e3"] and second.duplicates == 1 and balanced(second)


def test_a_batch_processed_in_slices_equals_one_pass() -> None:
    recs = [Rec(raw(f"e{i % 7}", user=f"u{i % 3}"), offset=i) for i in range(20)]
    recs.insert(5, Rec(b"not json", offset=99))
    whole = processor().process(recs, NOW, already=["e6"])
    p = processor()
    sliced = BatchResult(seen={"e6"})
    for i in range(0, len(recs), 4):
        p.process(recs[i : i + 4], NOW, into=sliced)
    assert sliced == whole and balanced(sliced) and sliced.duplicates == 14
