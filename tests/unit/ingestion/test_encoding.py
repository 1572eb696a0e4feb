"""The direct AdEvent encoder writes exactly the codec's bytes, or defers to the codec."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.codec import CodecError, SchemaRegistry
from services.ingestion.encoding import AdEventEncoder

_REGISTRY = SchemaRegistry.load()
_CODEC = _REGISTRY.codec("AdEvent")
_ENCODER = AdEventEncoder(_CODEC)

_text = st.text(max_size=40) | st.sampled_from(["", "a" * 300, "é✓\U0001f600"])
_maybe_text = st.none() | _text
_double = st.none() | st.floats(allow_nan=False, allow_infinity=False)
_long = st.integers(-(2**63), 2**63 - 1)


def _fields(**over: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "event_id": "ev-1",
        "type": "click",
        "occurred_at": 1_794_823_200_000,
        "campaign_id": "spring",
        "creative_id": "cr-1",
        "decision_id": None,
        "user_id": "ab" * 32,
        "consent": {"personalization": True},
        "context": {"country": "DE", "device": "mobile"},
        "value": None,
        "sentiment": None,
        "source": "web",
        "ingested_at": 1_794_823_200_123,
    }
    fields.update(over)
    return fields


def test_the_current_adevent_schema_is_encoded_directly() -> None:
    assert _ENCODER.direct
    assert _ENCODER.encode(_fields()) == _CODEC.encode(_fields())
    assert _CODEC.decode(_ENCODER.encode(_fields())) == _CODEC.decode(_CODEC.encode(_fields()))


def test_another_record_version_falls_back_to_the_codec() -> None:
    old = _REGISTRY.codec("AdEvent", 1)
    encoder = AdEventEncoder(old)
    assert not encoder.direct
    fields = _fields()
    del fields["ingested_at"]
    assert encoder.encode(fields) == old.encode(fields)


@settings(max_examples=300, deadline=None)
@given(
    event_id=_text,
    etype=st.sampled_from(["impression", "click", "conversion", "view", "comment", "dismiss"]),
    occurred_at=_long,
    campaign_id=_text,
    creative_id=_maybe_text,
    decision_id=_maybe_text,
    consent=st.dictionaries(_text, st.booleans(), max_size=4),
    context=st.dictionaries(_text, _text, max_size=4),
    value=_double,
    sentiment=_double,
    source=_maybe_text,
    ingested_at=st.none() | _long,
)
def test_direct_bytes_equal_the_codec_bytes(**kw: object) -> None:
    fields = _fields(**{("type" if k == "etype" else k): v for k, v in kw.items()})
    assert _ENCODER.encode(fields) == _CODEC.encode(fields)


@pytest.mark.parametrize(
    "over",
    [
        {"type": "purchase"},
        {"occurred_at": 2**70},
        {"event_id": "\ud800"},
        {"value": 3},
        {"value": math.nan},
        {"consent": {"p": 1}},
        {"consent": {"p": 1.0}},
        {"context": {"k": 5}},
        {"creative_id": 7},
    ],
)
def test_unusual_values_get_the_codec_result(over: dict[str, object]) -> None:
    _ENCODER.encode(_fields(consent={"p": True}, context={"k": "5"}))  # cached look-alikes
    fields = _fields(**over)
    try:
        expected: bytes | type[CodecError] = _CODEC.encode(fields)
    except CodecError:
        expected = CodecError
    if expected is CodecError:
        with pytest.raises(CodecError):
            _ENCODER.encode(fields)
    else:
        assert _ENCODER.encode(fields) == expected
