"""AdEvent rules: lenient timestamps and optional fields, strict ids/type/consent, never raises."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.ingestion.rejection import REASONS, Rejection
from services.ingestion.validation import (
    MIN_OCCURRED_AT_MS,
    Event,
    Limits,
    consent_verdict,
    validate_event,
)

NOW_MS = 1_795_000_000_000  # 2026-11-17


def good(**over: object) -> dict[str, object]:
    event: dict[str, object] = {
        "event_id": "ev-1",
        "type": "click",
        "occurred_at": "2026-11-16T10:00:00Z",
        "campaign_id": "spring",
        "creative_id": "cr-1",
        "decision_id": "d-1",
        "user_id": "app-user-42",
        "consent": {"personalization": True},
        "context": {"country": "DE", "age": 31},
        "value": None,
        "source": "web",
    }
    event.update(over)
    return {k: v for k, v in event.items() if v is not ...}


def check(obj: object, **kw: object) -> Event | Rejection:
    return validate_event(obj, now_ms=NOW_MS, **kw)  # type: ignore[arg-type]


def test_valid_event_becomes_adevent_v2_fields() -> None:
    out = check(good())
    assert isinstance(out, Event)
    assert out.fields["occurred_at"] == int(
        datetime(2026, 11, 16, 10, tzinfo=UTC).timestamp() * 1000
    )
    assert out.fields["context"] == {"country": "DE", "age": "31"}
    assert out.fields["ingested_at"] is None
    assert out.fields["sentiment"] is None


@pytest.mark.parametrize(
    "stamp",
    [
        "2026-11-16T10:00:00Z",
        "2026-11-16T11:00:00+01:00",
        "2026-11-16T10:00:00",  # naive: UTC
        "2026-11-16 10:00:00.000",
        1_794_823_200_000,
        "1794823200000",
        1_794_823_200_000.7,
    ],
)
def test_timestamps_iso_or_epoch_millis(stamp: object) -> None:
    out = check(good(occurred_at=stamp))
    assert isinstance(out, Event), out
    assert out.fields["occurred_at"] == 1_794_823_200_000


@pytest.mark.parametrize(
    ("stamp", "words"),
    [
        (1_794_823_200, "epoch seconds"),  # seconds, not ms
        ("1999-12-31T23:59:59Z", "before 2000"),
        (NOW_MS + 3_600_000, "in the future"),
        ("yesterday", "not ISO-8601"),
        (math.nan, "not ISO-8601"),
        (True, "not ISO-8601"),
        ([2026], "not ISO-8601"),
    ],
)
def test_bad_timestamps_name_field_and_value(stamp: object, words: str) -> None:
    out = check(good(occurred_at=stamp))
    assert isinstance(out, Rejection)
    assert (out.reason, out.field) == ("bad_timestamp", "occurred_at")
    assert words in out.message


def test_future_skew_is_configurable() -> None:
    stamp = NOW_MS + 60_000
    assert isinstance(check(good(occurred_at=stamp)), Event)
    out = check(good(occurred_at=stamp), limits=Limits(max_future_skew_ms=1000))
    assert isinstance(out, Rejection) and out.reason == "bad_timestamp"


def test_year_2000_is_the_floor() -> None:
    assert isinstance(check(good(occurred_at=MIN_OCCURRED_AT_MS)), Event)


@pytest.mark.parametrize("name", ["event_id", "type", "occurred_at", "campaign_id", "user_id"])
def test_required_fields(name: str) -> None:
    for missing in (good(**{name: ...}), good(**{name: None})):
        out = check(missing)
        assert isinstance(out, Rejection)
        assert (out.reason, out.field) == ("missing_field", name)
        assert name in out.message


@pytest.mark.parametrize(
    ("over", "reason", "field"),
    [
        ({"type": "purchase"}, "schema_violation", "type"),
        ({"type": "Click"}, "schema_violation", "type"),
        ({"event_id": 17}, "schema_violation", "event_id"),
        ({"event_id": "   "}, "bad_value", "event_id"),
        ({"event_id": "x" * 257}, "bad_value", "event_id"),
        ({"event_id": "a\ud800b"}, "bad_value", "event_id"),
        ({"campaign_id": "a\x00b"}, "bad_value", "campaign_id"),
        ({"consent": {"personalization": "yes"}}, "schema_violation", "consent"),
        ({"consent": ["personalization"]}, "schema_violation", "consent"),
        ({"context": {"country": {"nested": 1}}}, "schema_violation", "context"),
        ({"context": {"k": "v" * 300}}, "bad_value", "context"),
        ({"context": {f"k{i}": "v" for i in range(65)}}, "bad_value", "context"),
        ({"value": "12.5"}, "schema_violation", "value"),
        ({"value": math.inf}, "bad_value", "value"),
        ({"value": math.nan}, "bad_value", "value"),
        ({"value": True}, "schema_violation", "value"),
        ({"sentiment": 0.5}, "bad_value", "sentiment"),  # not a comment
        ({"type": "comment", "sentiment": 1.5}, "bad_value", "sentiment"),
    ],
)
def test_strict_rules(over: dict[str, object], reason: str, field: str) -> None:
    out = check(good(**over))
    assert isinstance(out, Rejection), over
    assert (out.reason, out.field) == (reason, field)
    assert field in out.message


def test_comment_sentiment_kept_free_text_dropped() -> None:
    out = check(good(type="comment", sentiment=-0.25, text="I hate this ad", value=3))
    assert isinstance(out, Event)
    assert out.fields["sentiment"] == -0.25 and out.fields["value"] == 3.0
    assert "text" not in out.fields
    assert "I hate" not in repr(out.fields)


def test_optional_empty_strings_are_absent() -> None:
    out = check(good(creative_id="", decision_id="", source=""))
    assert isinstance(out, Event)
    assert out.fields["creative_id"] is None and out.fields["source"] is None


def test_raw_user_id_never_in_messages() -> None:
    out = check(good(user_id=12345678))
    assert isinstance(out, Rejection) and out.field == "user_id"
    assert "12345678" not in out.message


@pytest.mark.parametrize(
    ("consent", "verdict"),
    [
        ({"personalization": True}, None),
        ({"personalization": False}, "consent_denied"),
        ({}, "consent_missing"),
        ({"analytics": True}, "consent_missing"),
    ],
)
def test_consent_verdict(consent: dict[str, bool], verdict: str | None) -> None:
    assert consent_verdict(consent) == verdict


def test_not_an_object() -> None:
    for obj in ([good()], "event", 3, None):
        out = check(obj)
        assert isinstance(out, Rejection) and out.reason == "schema_violation"


_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
_json = st.recursive(
    _scalars,
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=10), kids, max_size=4)
    ),
    max_leaves=12,
)
_field_names = st.sampled_from(
    [
        "event_id",
        "type",
        "occurred_at",
        "campaign_id",
        "creative_id",
        "decision_id",
        "user_id",
        "consent",
        "context",
        "value",
        "sentiment",
        "source",
    ]
)


@settings(max_examples=150, deadline=None)
@given(
    base=st.just(good()),
    overrides=st.dictionaries(_field_names, _json, max_size=5),
    drops=st.sets(_field_names, max_size=3),
)
def test_never_raises_always_typed(
    base: dict[str, object], overrides: dict[str, object], drops: set[str]
) -> None:
    obj = {k: v for k, v in {**base, **overrides}.items() if k not in drops}
    out = check(obj)
    assert isinstance(out, Event | Rejection)
    if isinstance(out, Rejection):
        assert out.reason in REASONS and out.message
    else:
        assert set(out.fields) >= {"event_id", "type", "occurred_at", "user_id", "ingested_at"}


@settings(max_examples=200, deadline=None)
@given(_json)
def test_arbitrary_json_never_raises(obj: object) -> None:
    assert isinstance(check(obj), Event | Rejection)


def _fast_case(**over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "occurred_at": NOW_MS - 5,
        "context": {"country": "DE", "device": "mobile"},
    }
    return good(**{**base, **over})


def test_common_event_takes_the_fast_path_with_the_same_fields() -> None:
    from services.ingestion.validation import _validate_full, _well_formed

    for obj in (
        _fast_case(),
        _fast_case(creative_id="", decision_id=..., source=None, value=2.5),
        _fast_case(occurred_at=datetime(2026, 11, 16, 10, tzinfo=UTC), consent=...),
    ):
        fast = _well_formed(obj, NOW_MS, Limits())
        assert fast is not None
        assert fast == _validate_full(obj, NOW_MS, Limits())


_tricky_text = st.sampled_from(
    [
        "",
        " ",
        "\t",
        "ok",
        "a\x00b",
        "x\x1f",
        "\x7f",
        "\ud800",
        "x\udfff",
        "é✓",
        "a" * 256,
        "a" * 257,
    ]
) | st.text(max_size=8)
_tricky = (
    _tricky_text
    | st.none()
    | st.booleans()
    | st.integers(MIN_OCCURRED_AT_MS - 2, MIN_OCCURRED_AT_MS + 2)
    | st.integers(NOW_MS + 299_998, NOW_MS + 300_002)
    | st.integers()
    | st.floats()
    | st.sampled_from(["impression", "comment", "Click", 0.5, -1.5])
    | st.datetimes(timezones=st.just(UTC))
    | st.dictionaries(
        _tricky_text, _tricky_text | st.booleans() | st.none() | st.integers(), max_size=3
    )
)


@settings(max_examples=400, deadline=None)
@given(
    overrides=st.dictionaries(_field_names | st.just("sentiment"), _tricky, max_size=4),
    drops=st.sets(_field_names, max_size=2),
)
def test_fast_path_never_differs_from_the_full_checks(
    overrides: dict[str, object], drops: set[str]
) -> None:
    from services.ingestion.validation import _validate_full

    obj = {k: v for k, v in {**_fast_case(), **overrides}.items() if k not in drops}
    assert check(obj) == _validate_full(obj, NOW_MS, Limits())


# Fragments of Python's own error messages that must never reach a client or a dead letter.
_INTERNALS = ("sys.", "set_int_max", "isoformat", "recursion", "must be in 1", "Error")


@given(
    field=st.sampled_from(["occurred_at", "value", "sentiment"]),
    value=st.one_of(
        st.integers(min_value=10**30, max_value=10**4000),
        st.integers(min_value=10**30, max_value=10**4000).map(str),
        st.floats(min_value=1e30, allow_infinity=False),
        st.text(min_size=1, max_size=40),
    ),
)
@settings(max_examples=200, deadline=None)
def test_errors_never_quote_interpreter_internals(field: str, value: object) -> None:
    """A 4000-digit number or a garbage date gets our own short words, never Python's."""
    out = validate_event(good(**{field: value}), now_ms=NOW_MS)
    if isinstance(out, Rejection):
        assert len(out.message) < 300, out.message
        assert not any(f in out.message for f in _INTERNALS), out.message


def test_json_decoding_errors_use_our_words() -> None:
    from services.ingestion.decoding import decode_json

    for raw in (b'{"value": ' + b"7" * 5000 + b"}", b"[" * 100_000):
        out = decode_json(raw)
        assert isinstance(out, Rejection) and out.reason == "decode_error"
        assert not any(f in out.message for f in _INTERNALS), out.message
