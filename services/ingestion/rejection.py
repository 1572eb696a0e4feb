"""Why a raw record was not accepted: a stable reason code, the field, a message."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["REASONS", "Rejection", "show"]

# Reason codes written to DeadLetter.reason (and the dead-letter metric label).
REASONS = (
    "decode_error",  # not UTF-8 JSON, not Avro, corrupt bytes, null value
    "unknown_schema",  # Avro single object whose writer schema this service does not know
    "schema_violation",  # wrong JSON type or not an AdEvent (not an object, bad enum, ...)
    "missing_field",  # a required field is absent or null
    "bad_timestamp",  # occurred_at unparseable, before 2000, or too far in the future
    "bad_value",  # right type, unacceptable value (empty id, NaN, out of range, too long)
    "oversize",  # larger than ADMUSE_INGESTION_MAX_EVENT_BYTES; not parsed
    "internal_error",  # a bug in ingestion; the record is kept so it can be replayed
)


@dataclass(frozen=True, slots=True)
class Rejection:
    """A record ingestion cannot accept. `message` never carries a raw user id."""

    reason: str
    message: str
    field: str | None = None


def show(value: object, limit: int = 60) -> str:
    """A short, printable rendering of a bad value for an error message."""
    try:
        text = repr(value)
    except ValueError:  # e.g. an int with more digits than Python will print
        return f"<{type(value).__name__} too large to show>"
    return text if len(text) <= limit else f"{text[: limit - 3]}..."
