"""Raw bytes: JSON vs Avro told apart by content, oversize refused unparsed, garbage typed."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.codec import MAGIC, SchemaRegistry
from services.ingestion.decoding import Decoded, decode_json, decode_raw
from services.ingestion.rejection import REASONS, Rejection

REGISTRY = SchemaRegistry.load()
CODEC = REGISTRY.codec("AdEvent")
EVENT = {
    "event_id": "e1",
    "type": "click",
    "occurred_at": datetime(2026, 11, 27, 10, tzinfo=UTC),
    "campaign_id": "spring",
    "user_id": "u1",
    "consent": {"personalization": True},
}


def decode(data: bytes | None, max_bytes: int = 64 * 1024) -> Decoded | Rejection:
    return decode_raw(data, codec=CODEC, max_bytes=max_bytes)


def test_json_object() -> None:
    out = decode(json.dumps({"a": 1}).encode())
    assert out == Decoded({"a": 1}, "json")


def test_json_with_bom_and_unicode() -> None:
    out = decode('\ufeff{"a": "Grüße 👋"}'.encode())
    assert isinstance(out, Decoded) and out.value == {"a": "Grüße 👋"}


def test_avro_v1_and_v2_single_objects() -> None:
    v1 = REGISTRY.codec("AdEvent", 1).encode(EVENT)
    v2 = REGISTRY.codec("AdEvent", 2).encode({**EVENT, "ingested_at": None})
    for data in (v1, v2):
        out = decode(data)
        assert isinstance(out, Decoded) and out.fmt == "avro"
        assert out.value["event_id"] == "e1"
        # timestamps stay epoch-millis (what validation checks and the encoder writes)
        assert out.value["occurred_at"] == EVENT["occurred_at"].timestamp() * 1000


def test_avro_of_another_record_is_a_schema_violation() -> None:
    other = REGISTRY.codec("ErasureRequest").encode(
        {"request_id": "r", "user_id": "p", "requested_at": 1_795_000_000_000}
    )
    out = decode(other)
    assert isinstance(out, Rejection) and out.reason == "schema_violation"


def test_unknown_fingerprint() -> None:
    out = decode(MAGIC + b"\x00" * 8 + b"\x02a")
    assert isinstance(out, Rejection) and out.reason == "unknown_schema"


def test_oversize_is_refused_before_parsing() -> None:
    data = json.dumps({"event_id": "x", "pad": "p" * 2000}).encode()
    out = decode(data, max_bytes=1000)
    assert isinstance(out, Rejection) and out.reason == "oversize"
    assert str(len(data)) in out.message and "1000" in out.message


def test_null_value_and_bad_utf8_and_bad_json() -> None:
    for data in (None, b"\xff\xfe{}", b"{not json", b"", b"[" * 100_000):
        out = decode(data, max_bytes=1_000_000)
        assert isinstance(out, Rejection) and out.reason == "decode_error", data


def test_huge_integer_is_a_decode_error() -> None:
    out = decode(b'{"value": ' + b"9" * 5000 + b"}")
    assert isinstance(out, Rejection) and out.reason == "decode_error"


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300) | st.binary(max_size=200).map(lambda b: MAGIC + b))
def test_random_bytes_never_raise(data: bytes) -> None:
    out = decode(data)
    assert isinstance(out, Decoded | Rejection)
    if isinstance(out, Rejection):
        assert out.reason in REASONS


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 400), st.binary(min_size=1, max_size=8))
def test_truncated_or_corrupted_avro_never_raises(cut: int, noise: bytes) -> None:
    data = CODEC.encode({**EVENT, "context": {"country": "DE"}, "source": "sdk"})
    for mutated in (data[:cut], data[:cut] + noise + data[cut + len(noise) :]):
        assert isinstance(decode(mutated), Decoded | Rejection)


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
        lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids),
        max_leaves=8,
    ),
    st.sampled_from(["", " ", "\n", " x", "}", "\ufeff"]),
    st.sampled_from(["", " ", "\ufeff", "\ufeff "]),
)
def test_json_decodes_like_json_loads(value: object, tail: str, head: str) -> None:
    text = head + json.dumps({"v": value}) + tail
    out = decode_json(text.encode("utf-8", "surrogatepass"))
    try:
        expected = json.loads(text[1:] if text.startswith("\ufeff") else text)
    except ValueError:
        assert isinstance(out, Rejection)
    else:
        assert isinstance(out, Decoded)
        assert json.dumps(out.value) == json.dumps(expected)  # NaN-safe equality
