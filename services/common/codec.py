"""Avro single-object encoding over the schemas in `schemas/`.

Wire format (Avro specification, "Single object encoding"):
``C3 01`` | CRC-64-AVRO fingerprint of the writer schema's canonical form (8 bytes,
little-endian, as Java's `BinaryMessageEncoder` writes it) | Avro binary body.

Migration: admuse before 2026-12 wrote the 8 fingerprint bytes in reverse order, and topics
(compacted ones included) still hold such records. Readers accept that legacy order for a
deprecation period — each such read is counted in `admuse_codec_legacy_fingerprint_total`
and logged once per record type — and writers write only the specification's order.

A reader looks the writer schema up by fingerprint and resolves it to its own version of the
record, so old and new writers can share a topic. Every failure is a `CodecError` subclass
with a message that says what was wrong and what to do; nothing here raises anything else
for bad bytes.
"""

from __future__ import annotations

import io
import json
import os
import re
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro
import structlog
from fastavro.schema import fingerprint, to_parsing_canonical_form
from fastavro.validation import ValidationError
from prometheus_client import Counter

__all__ = [
    "CORRUPT_BODY_ERRORS",
    "LEGACY_FINGERPRINT_READS",
    "MAGIC",
    "CodecError",
    "EncodeError",
    "RecordCodec",
    "ResolutionError",
    "SchemaRegistry",
    "SchemaVersion",
    "TruncatedError",
    "UnknownFingerprintError",
    "UnknownRecordError",
    "WrongMagicError",
    "default_schemas_dir",
]

# What fastavro raises on a corrupt body (besides EOF/truncation, handled apart).
CORRUPT_BODY_ERRORS = (
    UnicodeDecodeError,
    ValueError,
    TypeError,
    KeyError,
    OverflowError,
    MemoryError,
)

MAGIC = b"\xc3\x01"
_HEADER = len(MAGIC) + 8
LEGACY_FINGERPRINT_READS = Counter(
    "admuse_codec_legacy_fingerprint",
    "Avro single objects read whose fingerprint is in the legacy (reversed) byte order that "
    "admuse wrote before 2026-12; deprecated, re-write or let them age out",
    ["record"],
)
_log = structlog.get_logger("admuse.codec")
_legacy_logged: set[str] = set()
_FILE = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)\.v(?P<version>\d+)\.avsc$")


class CodecError(ValueError):
    """Bytes or values that cannot be encoded/decoded. `reason` is a stable code."""

    reason = "decode_error"


class WrongMagicError(CodecError):
    reason = "decode_error"


class TruncatedError(CodecError):
    reason = "decode_error"


class UnknownFingerprintError(CodecError):
    reason = "unknown_schema"


class ResolutionError(CodecError):
    reason = "schema_violation"


class EncodeError(CodecError):
    reason = "schema_violation"


class UnknownRecordError(CodecError):
    reason = "unknown_schema"


@dataclass(frozen=True)
class SchemaVersion:
    """One `.avsc` file: a record name, its version number and the parsed schema."""

    name: str
    version: int
    schema: Mapping[str, Any]
    parsed: Any
    fingerprint: bytes  # 8 bytes, little-endian CRC-64-AVRO, as on the wire
    path: Path

    @property
    def header(self) -> bytes:
        return MAGIC + self.fingerprint

    @property
    def legacy_fingerprint(self) -> bytes:
        """The reversed byte order admuse wrote before 2026-12 (read-only; deprecated)."""
        return self.fingerprint[::-1]

    @property
    def fingerprints(self) -> tuple[bytes, bytes]:
        """Both orders a reader accepts during the deprecation period: spec first."""
        return (self.fingerprint, self.legacy_fingerprint)


def default_schemas_dir() -> Path:
    """`ADMUSE_SCHEMAS_DIR`, else `schemas/` at the repository (or image) root."""
    env = os.environ.get("ADMUSE_SCHEMAS_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "schemas"


class SchemaRegistry:
    """Every schema version on disk, indexed by (name, version) and by fingerprint.

    Parse once at start-up and share; lookups are dictionary reads.
    """

    def __init__(self, versions: Iterable[SchemaVersion]) -> None:
        self._by_name: dict[str, dict[int, SchemaVersion]] = {}
        self._by_fp: dict[bytes, SchemaVersion] = {}
        self._legacy: dict[bytes, SchemaVersion] = {}
        for v in versions:
            self._by_name.setdefault(v.name, {})[v.version] = v
            self._by_fp[v.fingerprint] = v
        for v in self._by_fp.values():
            if v.legacy_fingerprint not in self._by_fp:  # a palindrome is read as spec order
                self._legacy[v.legacy_fingerprint] = v

    @classmethod
    def load(cls, directory: Path | str | None = None) -> SchemaRegistry:
        directory = Path(directory) if directory else default_schemas_dir()
        if not directory.is_dir():
            raise FileNotFoundError(
                f"schema folder {directory} does not exist; set ADMUSE_SCHEMAS_DIR to the "
                "folder holding the *.avsc files"
            )
        versions = []
        for path in sorted(directory.glob("*.avsc")):
            m = _FILE.match(path.name)
            if not m:
                raise ValueError(f"schema file {path.name} is not named <Record>.v<N>.avsc")
            raw = json.loads(path.read_text())
            versions.append(_make_version(m["name"], int(m["version"]), raw, path))
        return cls(versions)

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def versions(self, name: str) -> list[SchemaVersion]:
        return [self._by_name[name][k] for k in sorted(self._lookup_name(name))]

    def get(self, name: str, version: int | None = None) -> SchemaVersion:
        versions = self._lookup_name(name)
        if version is None:
            return versions[max(versions)]
        if version not in versions:
            raise UnknownRecordError(
                f"no schema {name} v{version}; known versions: {sorted(versions)}"
            )
        return versions[version]

    def by_fingerprint(self, fp: bytes) -> SchemaVersion:
        found = self._by_fp.get(fp)
        if found is not None:
            return found
        legacy = self._legacy.get(fp)
        if legacy is not None:
            _count_legacy(legacy)
            return legacy
        raise UnknownFingerprintError(
            f"writer schema with fingerprint {fp.hex()} (little-endian CRC-64-AVRO) is not "
            "known to this reader: the writer used a schema that is not in this service's "
            "schemas/ folder (a newer version: deploy it; another schema: fix the producer)"
        )

    def codec(self, name: str, version: int | None = None) -> RecordCodec:
        """A codec that writes `name` at `version` (default: newest) and reads any version."""
        return RecordCodec(self, self.get(name, version))

    def _lookup_name(self, name: str) -> dict[int, SchemaVersion]:
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownRecordError(
                f"no schema named {name!r}; known records: {', '.join(self.names())}"
            ) from None


def _count_legacy(version: SchemaVersion) -> None:
    LEGACY_FINGERPRINT_READS.labels(version.name).inc()
    if version.name not in _legacy_logged:
        _legacy_logged.add(version.name)
        _log.warning(
            "legacy_fingerprint_read",
            record=version.name,
            version=version.version,
            detail="payload carries the reversed fingerprint admuse wrote before 2026-12; "
            "accepted for now (deprecated), counted in admuse_codec_legacy_fingerprint_total",
        )


def _make_version(name: str, version: int, raw: Mapping[str, Any], path: Path) -> SchemaVersion:
    parsed = fastavro.parse_schema(raw, _write_hint=True, _force=True)
    if parsed.get("name", "").rsplit(".", 1)[-1] != name:
        raise ValueError(f"{path.name} declares record {parsed.get('name')!r}, not {name!r}")
    canonical = to_parsing_canonical_form(raw)
    # fastavro's hex digits are the wire bytes in order (little-endian), as Java writes them.
    fp = bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))
    return SchemaVersion(name, version, raw, parsed, fp, path)


class RecordCodec:
    """Encode one record type; decode any known version of it into the reader's version."""

    def __init__(self, registry: SchemaRegistry, reader: SchemaVersion) -> None:
        self.registry = registry
        self.reader = reader

    @property
    def name(self) -> str:
        return self.reader.name

    def encode(self, value: Mapping[str, Any]) -> bytes:
        buf = io.BytesIO()
        buf.write(self.reader.header)
        try:
            fastavro.schemaless_writer(buf, self.reader.parsed, value)
        except (
            ValidationError,
            ValueError,
            TypeError,
            KeyError,
            AttributeError,
            OverflowError,
            struct.error,
        ) as exc:
            raise EncodeError(
                f"value does not fit {self.name} v{self.reader.version}: {exc}"
            ) from exc
        return buf.getvalue()

    def decode(self, data: bytes | bytearray | memoryview | None) -> dict[str, Any]:
        writer = self.writer_of(data)
        if writer.name != self.name:
            raise ResolutionError(
                f"payload is a {writer.name} v{writer.version}, this reader expects {self.name}"
            )
        body = io.BytesIO(bytes(data)[_HEADER:])  # type: ignore[index]
        reader = None if writer is self.reader else self.reader.parsed
        try:
            value = fastavro.schemaless_reader(body, writer.parsed, reader)
        except (EOFError, IndexError, struct.error) as exc:
            raise TruncatedError(
                f"{self.name} v{writer.version} body ends early ({len(data) - _HEADER} bytes)"  # type: ignore[arg-type]
            ) from exc
        except fastavro.read.SchemaResolutionError as exc:
            raise ResolutionError(
                f"cannot read {writer.name} v{writer.version} as v{self.reader.version}: {exc}"
            ) from exc
        except CORRUPT_BODY_ERRORS as exc:
            raise TruncatedError(f"{self.name} v{writer.version} body is corrupt: {exc}") from exc
        if body.tell() != len(body.getbuffer()):
            extra = len(body.getbuffer()) - body.tell()
            raise TruncatedError(
                f"{self.name} v{writer.version} body has {extra} unread trailing bytes"
            )
        return value

    def writer_of(self, data: bytes | bytearray | memoryview | None) -> SchemaVersion:
        """The writer schema a payload names, after checking magic and length."""
        if data is None:
            raise TruncatedError("payload is empty (null value); expected an Avro single object")
        head = bytes(data[:_HEADER])
        if head[:2] != MAGIC:
            raise WrongMagicError(
                f"payload does not start with the Avro single-object marker C3 01 "
                f"(starts with {head[:2].hex() or 'nothing'}); it is not admuse Avro"
            )
        if len(head) < _HEADER:
            raise TruncatedError(
                f"payload is {len(data)} bytes, shorter than the 10-byte single-object header"
            )
        return self.registry.by_fingerprint(head[2:])
