"""Avro single-object codec: round trips, schema evolution, every error path, interop."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import avro.io
import avro.schema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY as METRICS

from services.common.codec import (
    MAGIC,
    CodecError,
    EncodeError,
    ResolutionError,
    SchemaRegistry,
    TruncatedError,
    UnknownFingerprintError,
    UnknownRecordError,
    WrongMagicError,
)
from tests.unit.common.avro_examples import example

REGISTRY = SchemaRegistry.load()
ALL_VERSIONS = [v for n in REGISTRY.names() for v in REGISTRY.versions(n)]


def test_every_design_record_has_a_schema() -> None:
    assert set(REGISTRY.names()) >= {
        "AdEvent",
        "DeadLetter",
        "Decision",
        "Reward",
        "CreativeStats",
        "Campaign",
        "Creative",
        "ModelPublished",
        "ErasureRequest",
    }


@pytest.mark.parametrize("sv", ALL_VERSIONS, ids=lambda v: f"{v.name}.v{v.version}")
def test_round_trip_every_schema(sv) -> None:
    codec = REGISTRY.codec(sv.name, sv.version)
    value = example(sv.schema)
    data = codec.encode(value)
    assert data[:2] == MAGIC and data[2:10] == sv.fingerprint
    assert REGISTRY.codec(sv.name, sv.version).decode(data) == value


def test_fingerprints_are_distinct_and_stable() -> None:
    fps = [v.fingerprint for v in ALL_VERSIONS]
    assert len(set(fps)) == len(fps)
    # The fingerprint is of the canonical form: whitespace/doc changes must not alter it.
    sv = REGISTRY.get("ErasureRequest", 1)
    again = SchemaRegistry.load(sv.path.parent).get("ErasureRequest", 1)
    assert again.fingerprint == sv.fingerprint


def _adevent_v1() -> dict:
    return {
        "event_id": "e-1",
        "type": "click",
        "occurred_at": 1_764_000_000_000,
        "campaign_id": "spring",
        "user_id": "u-1",
        "consent": {"personalization": True},
        "context": {"country": "DE"},
        "value": 3.5,
    }


def test_v1_writer_read_by_v2_reader_fills_default() -> None:
    old = REGISTRY.codec("AdEvent", 1).encode(_adevent_v1())
    new = REGISTRY.codec("AdEvent", 2).decode(old)
    assert new["ingested_at"] is None
    assert new["event_id"] == "e-1" and new["value"] == 3.5 and new["context"] == {"country": "DE"}


def test_v2_writer_read_by_v1_reader_drops_new_field() -> None:
    v2 = REGISTRY.codec("AdEvent", 2).encode({**_adevent_v1(), "ingested_at": 1_764_000_000_500})
    old = REGISTRY.codec("AdEvent", 1).decode(v2)
    assert "ingested_at" not in old and old["event_id"] == "e-1"


def test_default_codec_writes_newest_version() -> None:
    assert REGISTRY.codec("AdEvent").reader.version == max(
        v.version for v in REGISTRY.versions("AdEvent")
    )


GOOD = REGISTRY.codec("AdEvent").encode(_adevent_v1())


@pytest.mark.parametrize(
    ("payload", "error", "words"),
    [
        (b"", WrongMagicError, "C3 01"),
        (None, TruncatedError, "empty"),
        (b'{"event_id": 1}', WrongMagicError, "7b22"),
        (GOOD[:6], TruncatedError, "10-byte"),
        (GOOD[:14], TruncatedError, "ends early"),
        (GOOD + b"\x00\x01", TruncatedError, "trailing"),
        (MAGIC + b"\x00" * 8 + GOOD[10:], UnknownFingerprintError, "0000000000000000"),
    ],
    ids=["empty", "null", "json", "short-header", "truncated-body", "trailing", "unknown-fp"],
)
def test_error_paths_are_typed_and_explain(payload, error, words) -> None:
    with pytest.raises(error) as info:
        REGISTRY.codec("AdEvent").decode(payload)
    assert words in str(info.value)
    assert isinstance(info.value, CodecError) and info.value.reason


def test_reading_another_record_type_is_a_resolution_error() -> None:
    data = REGISTRY.codec("ErasureRequest").encode(
        {"request_id": "r", "user_id": "p", "requested_at": 0}
    )
    with pytest.raises(ResolutionError, match="ErasureRequest"):
        REGISTRY.codec("AdEvent").decode(data)


def test_encode_rejects_values_that_do_not_fit() -> None:
    with pytest.raises(EncodeError, match="event_id"):
        REGISTRY.codec("AdEvent").encode({**_adevent_v1(), "event_id": 7})
    with pytest.raises(EncodeError):
        REGISTRY.codec("AdEvent").encode({**_adevent_v1(), "type": "teleport"})


def test_unknown_record_and_version_are_named() -> None:
    with pytest.raises(UnknownRecordError, match="Nope"):
        REGISTRY.codec("Nope")
    with pytest.raises(UnknownRecordError, match="v99"):
        REGISTRY.codec("AdEvent", 99)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_never_escapes_as_anything_but_codec_error(junk: bytes) -> None:
    for payload in (junk, MAGIC + junk, GOOD[:10] + junk):
        try:
            REGISTRY.codec("AdEvent").decode(payload)
        except CodecError:
            pass


# --- interop with Apache Avro's own Python library (a reader and writer we did not write) ---


def _apache_schema(name: str, version: int):
    return avro.schema.parse(json.dumps(REGISTRY.get(name, version).schema))


def _strip_logical(node):
    if isinstance(node, dict):
        return {k: _strip_logical(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [_strip_logical(v) for v in node]
    return node


def _apache_fingerprint(name: str, version: int) -> bytes:
    """CRC-64-AVRO as Apache Avro computes it.

    The specification's Parsing Canonical Form drops logicalType and writes {"type": "long"} as
    "long"; Apache Avro's Python library (1.12) keeps {"type": "long"} for logical types and so
    fingerprints differently. Stripping logicalType first (it never takes part in the canonical
    form) makes the library produce the specification's fingerprint, in the little-endian
    byte order single-object encoding carries — compared as the library returns it.
    """
    stripped = _strip_logical(REGISTRY.get(name, version).schema)
    return avro.schema.parse(json.dumps(stripped)).fingerprint("CRC-64-AVRO")


def test_apache_avro_reads_our_payload() -> None:
    sv = REGISTRY.get("Decision")
    value = example(sv.schema)
    data = REGISTRY.codec("Decision").encode(value)
    schema = _apache_schema("Decision", sv.version)
    # Apache Avro computes the same CRC-64-AVRO fingerprint of the canonical form.
    assert _apache_fingerprint("Decision", sv.version) == data[2:10]
    decoded = avro.io.DatumReader(schema).read(avro.io.BinaryDecoder(io.BytesIO(data[10:])))
    assert decoded["decision_id"] == value["decision_id"]
    assert decoded["propensity"] == value["propensity"]
    assert decoded["context"] == value["context"]
    assert decoded["decided_at"] == value["decided_at"]


def test_we_read_apache_avro_payload_with_resolution() -> None:
    schema = _apache_schema("AdEvent", 1)
    buf = io.BytesIO()
    event = {**_adevent_v1(), "occurred_at": datetime(2026, 11, 27, tzinfo=UTC)}
    avro.io.DatumWriter(schema).write(event, avro.io.BinaryEncoder(buf))
    payload = b"\xc3\x01" + _apache_fingerprint("AdEvent", 1) + buf.getvalue()
    decoded = REGISTRY.codec("AdEvent", 2).decode(payload)
    assert decoded["event_id"] == "e-1" and decoded["ingested_at"] is None


def test_we_write_the_fingerprint_in_apache_avro_byte_order_for_every_schema() -> None:
    for sv in ALL_VERSIONS:
        assert sv.fingerprint == _apache_fingerprint(sv.name, sv.version), sv.path.name


def test_legacy_reversed_fingerprint_is_read_counted_and_never_written() -> None:
    codec = REGISTRY.codec("AdEvent")
    data = codec.encode(example(codec.reader.schema))
    legacy = data[:2] + data[2:10][::-1] + data[10:]
    before = _legacy_reads("AdEvent")
    assert codec.decode(legacy) == codec.decode(data)
    assert _legacy_reads("AdEvent") == before + 1
    assert codec.decode(data) and _legacy_reads("AdEvent") == before + 1  # spec order: not counted
    assert codec.encode(codec.decode(legacy))[2:10] == codec.reader.fingerprint


def _legacy_reads(record: str) -> float:
    value = METRICS.get_sample_value("admuse_codec_legacy_fingerprint_total", {"record": record})
    return value or 0.0
