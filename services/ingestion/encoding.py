"""A direct Avro encoder for validated AdEvent v2 records, byte-identical to the codec's.

`RecordCodec.encode` (fastavro's generic writer) costs ~40 µs per event here, most of it in
schema walking and union branch matching; a validated event has known Python types, so its
body can be written directly in a few µs. The encoder is only used when the codec writes
exactly the AdEvent v2 layout it was written for (checked once at construction), and any
surprise while encoding (an unexpected type or value) falls back to the codec, so results —
bytes or the codec's rejection — never differ from `RecordCodec.encode`. The unit tests compare
the two on generated events.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

from services.common.codec import RecordCodec

__all__ = ["AdEventEncoder"]

_V2_LAYOUT = (
    ("event_id", "string"),
    ("type", "enum"),
    ("occurred_at", "long"),
    ("campaign_id", "string"),
    ("creative_id", "null|string"),
    ("decision_id", "null|string"),
    ("user_id", "string"),
    ("consent", "map<boolean>"),
    ("context", "map<string>"),
    ("value", "null|double"),
    ("sentiment", "null|double"),
    ("source", "null|string"),
    ("ingested_at", "null|long"),
)
_SMALL = [bytes([(n << 1) if n >= 0 else ((-n << 1) - 1)]) for n in range(64)]
_NULL = b"\x00"
_PRESENT = b"\x02"  # union branch 1, zig-zag
_TRUE, _FALSE = b"\x01", b"\x00"
_DOUBLE = struct.Struct("<d").pack
_CACHE_ENTRIES = 50_000


def _long(n: int) -> bytes:
    """Avro long: zig-zag, then a little-endian base-128 varint."""
    if 0 <= n < 64:
        return _SMALL[n]
    if not -(1 << 63) <= n < (1 << 63):
        raise OverflowError(f"{n} does not fit an Avro long")
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def _string(s: str) -> bytes:
    data = s.encode("utf-8")
    return _long(len(data)) + data


def _layout(codec: RecordCodec) -> tuple[tuple[str, str], ...]:
    """The codec's record fields as (name, type sketch), to compare against `_V2_LAYOUT`."""

    def sketch(t: Any) -> str:
        if isinstance(t, list):
            return "|".join(sketch(b) for b in t)
        if isinstance(t, dict):
            kind = t.get("type")
            if kind == "map":
                return f"map<{sketch(t['values'])}>"
            if kind == "enum":
                return "enum"
            return sketch(kind)
        return str(t)

    return tuple((f["name"], sketch(f["type"])) for f in codec.reader.schema["fields"])


class AdEventEncoder:
    """Encode validated AdEvent v2 fields; `encode` equals `codec.encode` byte for byte."""

    def __init__(self, codec: RecordCodec) -> None:
        self._codec = codec
        schema = codec.reader.schema
        self.direct = codec.name == "AdEvent" and _layout(codec) == _V2_LAYOUT
        self._header = codec.reader.header
        self._types: dict[str, bytes] = {}
        if self.direct:
            symbols = schema["fields"][1]["type"]["symbols"]
            self._types = {s: _long(i) for i, s in enumerate(symbols)}
        self._strings: dict[str, bytes] = {}
        self._maps: dict[tuple[tuple[str, Any], ...], bytes] = {}
        self._ingested: tuple[int | None, bytes] = (None, _NULL)  # one value per batch

    def encode(self, fields: Mapping[str, Any]) -> bytes:
        """The single-object encoding of `fields`; raises the codec's `CodecError` if the
        value does not fit (the direct path defers every doubt to the codec)."""
        if self.direct:
            try:
                return self._direct(fields)
            except (KeyError, TypeError, ValueError, OverflowError, AttributeError):
                pass
        return self._codec.encode(fields)

    def _cached(self, s: str) -> bytes:
        """A recurring string's encoding (campaign, creative, source, map keys)."""
        found = self._strings.get(s)
        if found is None:
            if type(s) is not str:
                raise TypeError("not a str")
            found = self._remember(s, _string(s))
        return found

    def _map(self, items: Mapping[str, Any], kind: type, value: Any) -> bytes:
        """A consent or context map's encoding; the same few maps recur, so remember them.
        Values are type-checked first: True == 1 would otherwise share a cache entry."""
        if not items:
            return _NULL
        for v in items.values():
            if type(v) is not kind:
                raise TypeError(f"map values are {kind.__name__}")
        key = tuple(items.items())
        found = self._maps.get(key)
        if found is None:
            parts = [_long(len(items))]
            for k, v in key:
                if type(k) is not str:
                    raise TypeError("map keys are str")
                parts.append(_string(k))
                parts.append(value(v))
            parts.append(_NULL)
            found = self._remember(key, b"".join(parts))
        return found

    def _remember(self, key: Any, data: bytes) -> bytes:
        cache = self._maps if type(key) is tuple else self._strings
        if len(cache) >= _CACHE_ENTRIES:
            cache.clear()
        cache[key] = data
        return data

    def _direct(self, f: Mapping[str, Any]) -> bytes:
        cached = self._cached
        ingested = f["ingested_at"]
        if ingested != self._ingested[0] or type(ingested) is not int:
            self._ingested = (ingested, _NULL if ingested is None else _PRESENT + _int(ingested))
        parts = [
            self._header,
            _str(f["event_id"]),
            self._types[f["type"]],
            _int(f["occurred_at"]),
            cached(f["campaign_id"]),
            _optional(f["creative_id"], cached),
            _optional(f["decision_id"], _str),
            _str(f["user_id"]),
            self._map(f["consent"], bool, _boolean),
            self._map(f["context"], str, _str),
            _double(f["value"]),
            _double(f["sentiment"]),
            _optional(f["source"], cached),
            self._ingested[1],
        ]
        return b"".join(parts)


def _optional(value: str | None, encode: Any) -> bytes:
    return _NULL if value is None else _PRESENT + encode(value)


def _boolean(flag: object) -> bytes:
    if type(flag) is not bool:
        raise TypeError("consent values are booleans")
    return _TRUE if flag else _FALSE


def _double(number: object) -> bytes:
    if number is None:
        return _NULL
    if type(number) is not float:
        raise TypeError("doubles are floats")
    return _PRESENT + _DOUBLE(number)


def _str(s: object) -> bytes:
    if type(s) is not str:
        raise TypeError("not a str")
    data = s.encode("utf-8")
    n = len(data)
    return (_SMALL[n] if n < 64 else _long(n)) + data


def _int(n: object) -> bytes:
    if type(n) is not int:
        raise TypeError("not an int")
    return _long(n)
