"""No raw user id in a dead letter: the identity fields of what is kept are redacted.

A dead letter keeps the rejected record so the failure can be diagnosed — but that record is
what the app sent, raw user id included, and admuse.events.dlq keeps it for weeks. So before
a dead letter is written every user id in it is replaced by `redact(user_id)` — in the
service, `redaction_token()`: ``redacted-`` and 12 random hex digits, a fresh one each time,
so nothing in the dead letter links it to a user or to the user's other records (no erasure
needs to find it: there is no identity left to erase):

- JSON (or bytes that are not an Avro single object, e.g. broken JSON): every
  ``"user_id": <string or number>`` is replaced in place, every other byte kept — including
  the ones that made the record fail. An unterminated string at the end (a truncated value)
  is replaced too.
- Avro single object: decoded with its writer's schema, ``user_id`` replaced, re-encoded with
  that same schema. When the body cannot be decoded, the user id cannot be located: only the
  10-byte header (marker + schema fingerprint) is kept, and the message says so.
- The record key is not kept (producers often key raw events by user id).
"""

from __future__ import annotations

import io
import json
import re
import secrets
from collections.abc import Callable

import fastavro

from services.common.codec import MAGIC, CodecError, RecordCodec

__all__ = ["protect_key", "protect_value", "redaction_token"]

Pseudonymize = Callable[[str], str]  # a user id -> what stands in its place

_USER_ID = re.compile(rb'("user_id"\s*:\s*)("(?:[^"\\]|\\.)*(?:"|$)|-?[0-9][0-9.eE+-]*)', re.S)
_HEADER = len(MAGIC) + 8


def redaction_token(_user_id: str = "") -> str:
    """What replaces a user id in a dead letter: random, so it links to nothing."""
    return f"redacted-{secrets.token_hex(6)}"


def protect_key(key: bytes | None) -> tuple[None, str]:
    """A dead letter keeps no key (it may be a user id); the note says so."""
    return None, "" if key is None else f" (record key of {len(key)} bytes not kept)"


def protect_value(
    value: bytes | None, pseudonymize: Pseudonymize, codec: RecordCodec
) -> tuple[bytes | None, str]:
    """(value without raw user ids, a note for the dead letter's message, '' when none)."""
    if value is None:
        return None, ""
    if value[:2] == MAGIC:
        return _avro(value, pseudonymize, codec)
    replaced = 0

    def swap(match: re.Match[bytes]) -> bytes:
        nonlocal replaced
        replaced += 1
        raw = match.group(2)
        try:
            user = json.loads(raw)
        except ValueError:  # unterminated (truncated) or an odd number: the text as it is
            user = raw.strip(b'"').decode("utf-8", "surrogateescape")
        return match.group(1) + b'"' + pseudonymize(str(user)).encode() + b'"'

    out = _USER_ID.sub(swap, value)
    return out, f" (user_id redacted in {replaced} place(s))" if replaced else ""


def _avro(value: bytes, pseudonymize: Pseudonymize, codec: RecordCodec) -> tuple[bytes, str]:
    try:
        writer = codec.writer_of(value)
        schema = writer.parsed
        body = io.BytesIO(value)
        body.seek(_HEADER)
        record = fastavro.schemaless_reader(body, schema, None)
        if body.tell() != len(value) or not isinstance(record, dict):
            raise ValueError("trailing bytes")
        if isinstance(record.get("user_id"), str):
            record["user_id"] = pseudonymize(record["user_id"])
        out = io.BytesIO()
        out.write(value[:_HEADER])
        fastavro.schemaless_writer(out, schema, record)
        return out.getvalue(), " (user_id redacted)"
    except (CodecError, ValueError, TypeError, KeyError, EOFError, IndexError, OverflowError):
        return value[:_HEADER], (
            f" (Avro body of {len(value)} bytes not kept: undecodable, so its user id could not "
            "be located; the header is)"
        )
