"""Raw bytes → a mapping to validate, telling JSON from Avro single-object by content.

An Avro single object starts with C3 01, which can never begin UTF-8 JSON (C3 is a lead byte
and 01 no continuation byte). Everything else must be a UTF-8 JSON text (a leading BOM is
allowed). Oversize values are refused before any parsing. Never raises for bad bytes.
"""

from __future__ import annotations

import io
import json
import struct
import sys
from dataclasses import dataclass
from typing import Any

import fastavro

from services.common.codec import CORRUPT_BODY_ERRORS, MAGIC, CodecError, RecordCodec, SchemaVersion
from services.ingestion.rejection import Rejection, show

__all__ = ["Decoded", "decode_json", "decode_raw"]

_BOM = "\ufeff"
_scan_json = json.JSONDecoder().scan_once  # json.loads without its whitespace handling
_AVRO_HEADER = len(MAGIC) + 8
_PLAIN: dict[bytes, Any] = {}  # writer fingerprint -> its schema without logical types
_AVRO_BODY_ERRORS = (EOFError, IndexError, struct.error, *CORRUPT_BODY_ERRORS, RecursionError)


@dataclass(slots=True)
class Decoded:
    """A decoded raw value and the wire format it came in."""

    value: Any
    fmt: str  # "json" or "avro"


def decode_raw(data: bytes | None, *, codec: RecordCodec, max_bytes: int) -> Decoded | Rejection:
    """Decode one raw record value; a `Rejection` says why it cannot be read."""
    if data is None:
        return Rejection("decode_error", "record value is null (a tombstone); expected an event")
    if len(data) > max_bytes:
        return Rejection(
            "oversize",
            f"record value is {len(data)} bytes; the limit is {max_bytes} "
            "(ADMUSE_INGESTION_MAX_EVENT_BYTES); it was not parsed",
        )
    if data[:2] == MAGIC:
        return _decode_avro(data, codec)
    return decode_json(data)


def _plain(raw: Any) -> Any:
    """A schema without its logical types: timestamp-millis stays the long it is."""
    if isinstance(raw, dict):
        return {k: _plain(v) for k, v in raw.items() if k != "logicalType"}
    if isinstance(raw, list):
        return [_plain(v) for v in raw]
    return raw


def _reader_schema(writer: SchemaVersion) -> Any:
    """The writer's schema as we read it: without logical types (cached per fingerprint)."""
    schema = _PLAIN.get(writer.fingerprint)
    if schema is None:
        schema = _PLAIN[writer.fingerprint] = fastavro.parse_schema(
            _plain(writer.schema), _write_hint=True, _force=True
        )
    return schema


def _decode_avro(data: bytes, codec: RecordCodec) -> Decoded | Rejection:
    """Read an AdEvent single object with its writer's own schema (any version).

    No resolution to the newest version: validation fills what older versions lack
    (ingested_at), and skipping resolution and the codec's copies halves the cost. Logical
    types are not applied either: timestamps stay epoch-millis longs, which is what
    validation checks and the encoder writes (a datetime there and back costs ~10 %). Errors
    map to the codec's reason codes.
    """
    try:
        writer = codec.writer_of(data)
    except CodecError as exc:
        return Rejection(exc.reason, f"Avro single object cannot be read: {exc}")
    if writer.name != codec.name:
        return Rejection(
            "schema_violation",
            f"Avro single object is a {writer.name} v{writer.version}, not an {codec.name}",
        )
    body = io.BytesIO(data)
    body.seek(_AVRO_HEADER)
    try:
        value = fastavro.schemaless_reader(body, _reader_schema(writer), None)
    except _AVRO_BODY_ERRORS:  # the reader's own message would quote its internals
        return Rejection(
            "decode_error",
            f"{writer.name} v{writer.version} body is truncated or corrupt "
            f"(stopped at byte {body.tell()} of {len(data)})",
        )
    if body.tell() != len(data):
        return Rejection(
            "decode_error",
            f"{writer.name} v{writer.version} body has {len(data) - body.tell()} trailing bytes",
        )
    return Decoded(value, "avro")


def decode_json(data: bytes) -> Decoded | Rejection:
    """Decode UTF-8 JSON (a leading BOM allowed); a `Rejection` says why it is not."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejection(
            "decode_error",
            f"value is neither an Avro single object (no C3 01 marker, starts with "
            f"{data[:4].hex()}) nor UTF-8 JSON: invalid UTF-8 at byte {exc.start}",
        )
    if text.startswith(_BOM):
        text = text[1:]
    if text[:1] == "{":  # the usual case: one object, nothing around it
        try:
            value, end = _scan_json(text, 0)
            if end == len(text):
                return Decoded(value, "json")
        except (ValueError, RecursionError, StopIteration):
            pass  # json.loads below says what is wrong
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return Rejection(
            "decode_error",
            f"value is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno} "
            f"(starts with {show(text[:40])})",
        )
    except RecursionError:
        return Rejection("decode_error", "value is not acceptable JSON: it is nested too deeply")
    except ValueError:  # the one other ValueError json raises: an integer with too many digits
        return Rejection(
            "decode_error",
            f"value is not acceptable JSON: a number has more than "
            f"{sys.get_int_max_str_digits()} digits",
        )
    return Decoded(value, "json")
