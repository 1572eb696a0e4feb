"""Fuzz ingestion through the real broker: thousands of generated raw messages — valid JSON and
Avro, invalid JSON, random bytes, wrong types, huge strings, NaN/inf, unicode edge cases,
duplicated event_ids, missing consent — and the books balance exactly, per reason:

    raw = forwarded + dead-lettered + consent-dropped + duplicates

Forwarded and dead-lettered records are read back from their topics (each dead letter traced to
its raw partition/offset); consent drops and duplicates are read from /metrics. The service
never stops.
"""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from services.common.codec import MAGIC, SchemaRegistry
from services.common.kafka import make_producer
from services.common.settings import KafkaSettings
from services.common.topics import Topics
from services.ingestion.dlq_identity import protect_value
from tests.integration.ingestion_harness import (
    IngestionProcess,
    TopicReader,
    sum_metric,
)
from tests.polling import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]


_TOKEN = re.compile(rb"redacted-[0-9a-f]{12}")


def _protected(value: bytes | None) -> bytes | None:
    """The original bytes with every user id redacted (tokens are random: normalized)."""
    codec = SchemaRegistry.load().codec("AdEvent")
    out = protect_value(value, lambda u: "redacted-000000000000", codec)[0]
    return None if out is None else _TOKEN.sub(b"R", out)


REGISTRY = SchemaRegistry.load()
EVENTS = REGISTRY.codec("AdEvent")
AVRO_V1 = REGISTRY.codec("AdEvent", 1)
DLQ = REGISTRY.codec("DeadLetter")
MAX_EVENT_BYTES = 4096
ANY_BAD = frozenset(
    {
        "decode_error",
        "unknown_schema",
        "schema_violation",
        "missing_field",
        "bad_timestamp",
        "bad_value",
        "oversize",
    }
)


@dataclass(frozen=True)
class Msg:
    value: bytes | None
    expect: str  # "valid", "consent_denied", "consent_missing" or "dlq"
    event_id: str | None = None
    reasons: frozenset[str] = frozenset()

    def __repr__(self) -> str:  # keep hypothesis' failure report readable
        shown = None if self.value is None else self.value[:80]
        return (
            f"Msg({shown!r}{'...' if self.value and len(self.value) > 80 else ''}, {self.expect})"
        )


def _event(eid: str, user: str, ctx: dict[str, Any] | None = None, **over: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "event_id": eid,
        "type": "impression",
        "occurred_at": int(time.time() * 1000) - 60_000,
        "campaign_id": "fuzz",
        "user_id": user,
        "consent": {"personalization": True},
        "context": ctx or {},
    }
    ev.update(over)
    return ev


_ids = st.sampled_from([f"dup-{i}" for i in range(25)])  # collide on purpose
_unicode = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12
)
_edge = st.sampled_from(
    ["é", "👩‍👩‍👧", "\u202eevil", "Ω\u0301", "\u200b", "ﷺ", "𝕏", "\ufeff", "中文"]
)


@st.composite
def valid_msg(draw: st.DrawFn) -> Msg:
    eid = draw(_ids | st.uuids().map(str))
    user = draw(_unicode.filter(str.strip) | _edge)
    if any(c < " " or c == "\x7f" for c in user):
        user = "plain-user"
    ctx = draw(
        st.dictionaries(st.sampled_from(["country", "device", "x"]), _unicode | _edge, max_size=3)
    )
    ev = _event(eid, user, ctx, type=draw(st.sampled_from(["impression", "click", "view"])))
    consent = draw(st.sampled_from([True, True, True, False, None]))
    if consent is None:
        ev.pop("consent")
    else:
        ev["consent"] = {"personalization": consent}
    expect = {True: "valid", False: "consent_denied", None: "consent_missing"}[consent]
    if draw(st.booleans()):
        value = AVRO_V1.encode({**ev, "consent": ev.get("consent", {})})
    else:
        value = json.dumps(ev, ensure_ascii=draw(st.booleans())).encode()
    return Msg(value, expect, eid)


@st.composite
def bad_msg(draw: st.DrawFn) -> Msg:
    kind = draw(st.integers(0, 9))
    eid = f"bad-{uuid.uuid4().hex[:8]}"
    ev = _event(eid, "u")
    if kind == 0:  # random bytes
        return Msg(draw(st.binary(max_size=64)), "dlq", reasons=ANY_BAD)
    if kind == 1:  # invalid JSON: truncated
        text = json.dumps(ev)
        return Msg(
            text[: draw(st.integers(1, len(text) - 1))].encode(),
            "dlq",
            reasons=frozenset({"decode_error"}),
        )
    if kind == 2:  # wrong types
        field, value = draw(
            st.sampled_from(
                [
                    ("event_id", 5),
                    ("type", "purchase"),
                    ("campaign_id", ["x"]),
                    ("value", "12"),
                    ("consent", {"personalization": "yes"}),
                    ("context", {"k": {"n": 1}}),
                ]
            )
        )
        return Msg(
            json.dumps({**ev, field: value}).encode(),
            "dlq",
            reasons=frozenset({"schema_violation"}),
        )
    if kind == 3:  # huge strings
        size = draw(st.integers(MAX_EVENT_BYTES, 50_000))
        return Msg(
            json.dumps({**ev, "source": "é" * size}).encode(),
            "dlq",
            reasons=frozenset({"oversize"}),
        )
    if kind == 4:  # NaN / inf
        bad = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
        return Msg(
            json.dumps({**ev, "value": bad}).encode(), "dlq", reasons=frozenset({"bad_value"})
        )
    if kind == 5:  # missing fields
        field = draw(st.sampled_from(["event_id", "type", "occurred_at", "campaign_id", "user_id"]))
        ev.pop(field)
        return Msg(json.dumps(ev).encode(), "dlq", reasons=frozenset({"missing_field"}))
    if kind == 6:  # timestamps
        stamp = draw(
            st.sampled_from(
                [
                    "not a time",
                    1_600_000_000,
                    "1999-01-01T00:00:00Z",
                    int(time.time() * 1000) + 10**9,
                ]
            )
        )
        return Msg(
            json.dumps({**ev, "occurred_at": stamp}).encode(),
            "dlq",
            reasons=frozenset({"bad_timestamp"}),
        )
    if kind == 7:  # lone surrogate and control chars in ids
        return Msg(
            json.dumps(
                {**ev, "event_id": draw(st.sampled_from(["a\ud800", "\x00", " "]))}
            ).encode(),
            "dlq",
            reasons=frozenset({"bad_value"}),
        )
    if kind == 8:  # not an object / null value / Avro of another record
        value = draw(
            st.sampled_from(
                [
                    b"[1, 2]",
                    b'"event"',
                    b"null",
                    None,
                    REGISTRY.codec("ErasureRequest").encode(
                        {"request_id": "r", "user_id": "p", "requested_at": 1}
                    ),
                ]
            )
        )
        return Msg(value, "dlq", reasons=frozenset({"schema_violation", "decode_error"}))
    # corrupt Avro
    good = AVRO_V1.encode(ev)
    cut = draw(st.integers(0, len(good) - 1))
    return Msg(MAGIC + good[2:cut] if cut > 2 else MAGIC, "dlq", reasons=ANY_BAD)


messages = st.lists(st.one_of(valid_msg(), valid_msg(), bad_msg()), min_size=230, max_size=280)


@pytest.fixture
async def rig(
    kafka: KafkaSettings, topics: Topics, tmp_path: Path
) -> AsyncIterator[tuple[Any, ...]]:
    svc = IngestionProcess(
        kafka, tmp_path / "ingestion.log", ADMUSE_INGESTION_MAX_EVENT_BYTES=str(MAX_EVENT_BYTES)
    )
    svc.start()
    producer = make_producer(kafka, max_request_size=2 * 1024 * 1024)
    await producer.start()
    try:
        await svc.wait_ready()
        async with (
            TopicReader(kafka, topics.events.name) as events,
            TopicReader(kafka, topics.events_dlq.name) as dlq,
        ):
            yield svc, producer, events, dlq, topics, {"forwarded": set()}
    finally:
        await producer.stop()
        assert svc.stop() == 0, svc.log_tail()


@pytest.mark.filterwarnings("ignore:Generating overly large repr")  # failure report only
@settings(
    max_examples=9,
    deadline=None,
    phases=[Phase.generate],
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(batch=messages)
async def test_books_balance(rig: tuple[Any, ...], batch: list[Msg]) -> None:
    svc, producer, events, dlq, topics, state = rig
    before = await svc.metrics()
    sent = await _send(producer, topics.events_raw.name, batch)

    async def consumed() -> bool:
        samples = await svc.metrics()
        return _delta(samples, before, "admuse_ingestion_events_in_total") >= len(batch)

    await eventually(consumed, 60, f"ingestion to consume {len(batch)} records\n{svc.log_tail()}")
    after = await svc.metrics()
    new_events = await events.poll()
    new_dlq = await dlq.poll()

    # Expected outcomes: consenting valid copies of an id forward once, ever; the rest duplicate.
    expect_fwd: set[str] = set()
    expect_dup = 0
    expect_dropped: Counter[str] = Counter()
    expect_dlq: dict[tuple[int, int], Msg] = {}
    for msg, (partition, offset) in zip(batch, sent, strict=True):
        if msg.expect == "dlq":
            expect_dlq[(partition, offset)] = msg
        elif msg.expect != "valid":
            expect_dropped[msg.expect] += 1
        elif msg.event_id in state["forwarded"] or msg.event_id in expect_fwd:
            expect_dup += 1
        else:
            expect_fwd.add(msg.event_id)

    got_ids = [EVENTS.decode(r.value)["event_id"] for r in new_events]
    assert len(got_ids) == len(set(got_ids)) and set(got_ids) == expect_fwd
    state["forwarded"] |= expect_fwd
    for rec in new_events:
        ev = EVENTS.decode(rec.value)
        assert rec.key == ev["user_id"].encode() and len(ev["user_id"]) == 64

    reasons: Counter[str] = Counter()
    assert len(new_dlq) == len(expect_dlq)
    for rec in new_dlq:
        letter = DLQ.decode(rec.value)
        msg = expect_dlq[(letter["source_partition"], letter["source_offset"])]
        assert letter["reason"] in msg.reasons, (letter, msg)
        # The original bytes, with every user id pseudonymized (no raw id in a dead letter).
        kept = letter["original_value"]
        assert (kept if kept is None else _TOKEN.sub(b"R", kept)) == _protected(msg.value)
        assert letter["message"] and letter["original_key"] is None
        reasons[letter["reason"]] += 1

    # The books, per reason, from topics and /metrics.
    dropped = {
        r: _delta(after, before, "admuse_ingestion_dropped_total", reason=r)
        for r in ("consent_denied", "consent_missing")
    }
    assert dropped == {r: expect_dropped[r] for r in dropped}
    assert _delta(after, before, "admuse_ingestion_duplicates_total") == expect_dup
    for reason in ANY_BAD | {"internal_error"}:
        assert (
            _delta(after, before, "admuse_ingestion_dead_letters_total", reason=reason)
            == reasons[reason]
        )
    assert _delta(after, before, "admuse_ingestion_events_out_total") == len(new_events)
    assert len(batch) == len(new_events) + len(new_dlq) + sum(dropped.values()) + expect_dup
    assert svc.alive


async def _send(producer: AIOKafkaProducer, topic: str, batch: list[Msg]) -> list[tuple[int, int]]:
    # aiokafka needs a key for a null value; every other record goes without one.
    futures = [
        await producer.send(topic, m.value, key=None if m.value is not None else b"tombstone")
        for m in batch
    ]
    await producer.flush()
    return [((md := await f).partition, md.offset) for f in futures]


def _delta(after: dict[str, float], before: dict[str, float], name: str, **labels: str) -> float:
    return sum_metric(after, name, **labels) - sum_metric(before, name, **labels)
