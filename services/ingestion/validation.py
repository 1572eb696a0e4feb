"""AdEvent rules: turn a decoded mapping (from JSON or Avro) into a typed event, or say why not.

Lenient where apps expect it (ISO-8601 or epoch-millis timestamps, optional fields missing,
numbers in context, unknown fields ignored — free text is never stored), strict where it
matters (type, ids, consent, timestamp sanity). `validate_event` never raises: every outcome is
an `Event` or a `Rejection`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.ingestion.rejection import Rejection, show
from services.ingestion.timestamps import datetime_ms, parse_timestamp_ms

__all__ = [
    "EVENT_TYPES",
    "MIN_OCCURRED_AT_MS",
    "Event",
    "Limits",
    "consent_verdict",
    "parse_timestamp_ms",
    "validate_event",
]

EVENT_TYPES = frozenset({"impression", "click", "conversion", "view", "comment", "dismiss"})
MIN_OCCURRED_AT_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
_MAX_ID = 256
_MAX_MAP_ENTRIES = 64
_MAX_MAP_KEY = 64
_MAX_CONTEXT_VALUE = 256
_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_NO_MAP: dict[str, Any] = {}  # an absent consent/context (never handed out)


@dataclass(frozen=True, slots=True)
class Limits:
    max_future_skew_ms: int = 300_000


@dataclass(frozen=True, slots=True)
class Event:
    """A valid AdEvent (v2 fields) that still carries the app's raw `user_id`."""

    fields: dict[str, Any]

    @property
    def event_id(self) -> str:
        return self.fields["event_id"]


class _Reject(Exception):  # internal control flow; never escapes this module
    def __init__(self, reason: str, field: str | None, message: str) -> None:
        self.rejection = Rejection(reason, message, field)


def validate_event(obj: object, *, now_ms: int, limits: Limits = Limits()) -> Event | Rejection:
    """Check one decoded raw event; return the typed AdEvent v2 fields or the reason it fails."""
    if type(obj) is dict:
        fast = _well_formed(obj, now_ms, limits)
        if fast is not None:
            return fast
    return _validate_full(obj, now_ms, limits)


def _validate_full(obj: object, now_ms: int, limits: Limits) -> Event | Rejection:
    """Every rule, field by field; names the first problem."""
    if type(obj) is not dict and not isinstance(obj, Mapping):
        return Rejection(
            "schema_violation",
            f"an event must be a JSON object, got {type(obj).__name__} {show(obj)}",
        )
    try:
        etype = _event_type(obj)
        fields: dict[str, Any] = {
            "event_id": _id(obj, "event_id", required=True),
            "type": etype,
            "occurred_at": _occurred_at(obj, now_ms, limits),
            "campaign_id": _id(obj, "campaign_id", required=True),
            "creative_id": _id(obj, "creative_id", required=False),
            "decision_id": _id(obj, "decision_id", required=False),
            "user_id": _id(obj, "user_id", required=True, secret=True),
            "consent": _consent(obj),
            "context": _context(obj),
            "value": _number(obj, "value"),
            "sentiment": _sentiment(obj, etype),
            "source": _id(obj, "source", required=False),
            "ingested_at": None,
        }
    except _Reject as rej:
        return rej.rejection
    return Event(fields)


_ID_FIELDS = ("event_id", "campaign_id", "user_id", "creative_id", "decision_id", "source")
_REQUIRED_IDS = 3  # the first three of _ID_FIELDS


def _well_formed(obj: dict[str, Any], now_ms: int, limits: Limits) -> Event | None:
    """The common case checked in one go: every id a clean string, occurred_at epoch-ms (or
    an Avro timestamp) in range, consent and context plain maps of clean strings and
    booleans, no sentiment.

    Returns exactly the `Event` the full checks below would return, or None when anything is
    unusual; then the full checks decide (and name the problem). One regex search over all
    ids and map keys replaces a search per field; context values may hold control characters,
    so one with any goes the full way too.
    """
    get = obj.get
    etype = get("type")
    occurred = get("occurred_at")
    consent = get("consent", _NO_MAP)
    context = get("context", _NO_MAP)
    value = get("value")
    if type(occurred) is datetime:  # Avro's timestamp-millis
        occurred = datetime_ms(occurred)
    if not (
        type(etype) is str
        and etype in EVENT_TYPES
        and type(occurred) is int
        and MIN_OCCURRED_AT_MS <= occurred <= now_ms + limits.max_future_skew_ms
        and get("sentiment") is None
        and (value is None or (type(value) is float and math.isfinite(value)))
        and type(consent) is dict
        and type(context) is dict
        and len(consent) <= _MAX_MAP_ENTRIES
        and len(context) <= _MAX_MAP_ENTRIES
    ):
        return None
    ids = [get(name) for name in _ID_FIELDS]
    for i, text in enumerate(ids):
        if type(text) is not str or len(text) > _MAX_ID or text.isspace():
            if i >= _REQUIRED_IDS and text is None:
                continue
            return None
        if not text:
            if i < _REQUIRED_IDS:
                return None
            ids[i] = None
    checked = [text for text in ids if text]
    for key, flag in consent.items():
        if type(key) is not str or not 0 < len(key) <= _MAX_MAP_KEY or type(flag) is not bool:
            return None
        checked.append(key)
    for key, text in context.items():
        if (
            type(key) is not str
            or not 0 < len(key) <= _MAX_MAP_KEY
            or type(text) is not str
            or len(text) > _MAX_CONTEXT_VALUE
        ):
            return None
        checked.append(key)
        checked.append(text)
    if _BAD_CHARS.search("".join(checked)):
        return None
    event_id, campaign_id, user_id, creative_id, decision_id, source = ids
    return Event(
        {
            "event_id": event_id,
            "type": etype,
            "occurred_at": occurred,
            "campaign_id": campaign_id,
            "creative_id": creative_id,
            "decision_id": decision_id,
            "user_id": user_id,
            "consent": consent if consent is not _NO_MAP else {},
            "context": context if context is not _NO_MAP else {},
            "value": value,
            "sentiment": None,
            "source": source,
            "ingested_at": None,
        }
    )


def consent_verdict(consent: Mapping[str, bool]) -> str | None:
    """None when the event may be forwarded, else the drop reason (a metric label)."""
    given = consent.get("personalization")
    if given is True:
        return None
    return "consent_missing" if given is None else "consent_denied"


def _event_type(obj: Mapping[str, Any]) -> str:
    value = obj.get("type")
    if value is None:
        raise _Reject("missing_field", "type", "field 'type' is missing; it is required")
    if not isinstance(value, str) or value not in EVENT_TYPES:
        raise _Reject(
            "schema_violation",
            "type",
            f"field 'type' is {show(value)}; expected one of {', '.join(sorted(EVENT_TYPES))}",
        )
    return value


def _id(obj: Mapping[str, Any], name: str, *, required: bool, secret: bool = False) -> str | None:
    value = obj.get(name)
    if (
        type(value) is str
        and 0 < len(value) <= _MAX_ID
        and not value.isspace()
        and not _BAD_CHARS.search(value)
    ):
        return value  # the common case, checked in one go
    if value is None or (not required and value == ""):
        if required:
            raise _Reject("missing_field", name, f"field '{name}' is missing; it is required")
        return None
    shown = "(withheld)" if secret else show(value)
    if not isinstance(value, str):
        raise _Reject(
            "schema_violation",
            name,
            f"field '{name}' must be a string, got {type(value).__name__} {shown}",
        )
    if not value.strip():
        raise _Reject("bad_value", name, f"field '{name}' is empty or blank")
    if len(value) > _MAX_ID:
        raise _Reject(
            "bad_value", name, f"field '{name}' is {len(value)} characters long; at most {_MAX_ID}"
        )
    raise _Reject(
        "bad_value",
        name,
        f"field '{name}' = {shown} holds control characters or lone surrogates",
    )


def _occurred_at(obj: Mapping[str, Any], now_ms: int, limits: Limits) -> int:
    value = obj.get("occurred_at")
    if value is None:
        raise _Reject("missing_field", "occurred_at", "field 'occurred_at' is missing")
    try:
        ms = parse_timestamp_ms(value)
    except (ValueError, TypeError, OverflowError):
        # Our words, not the parser's: its messages quote interpreter internals.
        raise _Reject(
            "bad_timestamp",
            "occurred_at",
            f"field 'occurred_at' = {show(value)} is not ISO-8601 "
            "(e.g. 2026-12-05T10:00:00Z) or epoch milliseconds",
        ) from None
    if ms < MIN_OCCURRED_AT_MS:
        hint = " (epoch seconds? send milliseconds)" if ms > 0 else ""
        raise _Reject(
            "bad_timestamp",
            "occurred_at",
            f"field 'occurred_at' = {show(value)} is before 2000-01-01{hint}",
        )
    if ms > now_ms + limits.max_future_skew_ms:
        ahead = (ms - now_ms) // 1000  # an int: a 400-digit timestamp must not overflow a float
        when = f"{ahead}s" if ahead < 10**9 else "more than 30 years"
        raise _Reject(
            "bad_timestamp",
            "occurred_at",
            f"field 'occurred_at' = {show(value)} is {when} in the future; "
            f"at most {limits.max_future_skew_ms // 1000}s of clock skew is accepted",
        )
    return ms


def _map_field(obj: Mapping[str, Any], name: str, of: str) -> Mapping[Any, Any]:
    """Field `name` as a mapping of at most `_MAX_MAP_ENTRIES` (absent or null: empty)."""
    value = obj.get(name)
    if value is None:
        return {}
    if type(value) is not dict and not isinstance(value, Mapping):
        raise _Reject(
            "schema_violation",
            name,
            f"field '{name}' must be an object of {of}, got {type(value).__name__} {show(value)}",
        )
    _check_map_size(name, value)
    return value


def _consent(obj: Mapping[str, Any]) -> dict[str, bool]:
    value = _map_field(obj, "consent", "booleans")
    out: dict[str, bool] = {}
    for key, flag in value.items():
        _check_key("consent", key)
        if flag is None:  # "not answered": the same as absent
            continue
        if not isinstance(flag, bool):
            raise _Reject(
                "schema_violation",
                "consent",
                f"consent[{show(key)}] must be true or false, got {show(flag)}",
            )
        out[key] = flag
    return out


def _context(obj: Mapping[str, Any]) -> dict[str, str]:
    value = _map_field(obj, "context", "strings")
    out: dict[str, str] = {}
    for key, item in value.items():
        _check_key("context", key)
        if type(item) is str:
            text = item
        elif item is None:
            continue
        elif isinstance(item, bool):
            text = "true" if item else "false"
        elif isinstance(item, int):
            text = str(item)
        elif isinstance(item, float) and math.isfinite(item):
            text = repr(item)
        elif isinstance(item, str):
            text = str(item)
        else:
            raise _Reject(
                "schema_violation",
                "context",
                f"context[{show(key)}] must be a string or number, got {show(item)}",
            )
        if len(text) > _MAX_CONTEXT_VALUE or _SURROGATE.search(text):
            raise _Reject(
                "bad_value",
                "context",
                f"context[{show(key)}] = {show(text)} is longer than {_MAX_CONTEXT_VALUE} "
                "characters or not valid Unicode",
            )
        out[key] = text
    return out


def _check_map_size(name: str, value: Mapping[Any, Any]) -> None:
    if len(value) > _MAX_MAP_ENTRIES:
        raise _Reject(
            "bad_value",
            name,
            f"field '{name}' has {len(value)} entries; at most {_MAX_MAP_ENTRIES}",
        )


def _check_key(name: str, key: object) -> None:
    if type(key) is str and 0 < len(key) <= _MAX_MAP_KEY and not _BAD_CHARS.search(key):
        return
    if not isinstance(key, str) or not key or len(key) > _MAX_MAP_KEY or _BAD_CHARS.search(key):
        raise _Reject(
            "bad_value",
            name,
            f"{name} key {show(key)} must be 1-{_MAX_MAP_KEY} printable characters",
        )


def _number(obj: Mapping[str, Any], name: str) -> float | None:
    value = obj.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Reject(
            "schema_violation",
            name,
            f"field '{name}' must be a number, got {type(value).__name__} {show(value)}",
        )
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise _Reject("bad_value", name, f"field '{name}' = {show(value)} is not a finite number")
    return number


def _sentiment(obj: Mapping[str, Any], etype: str) -> float | None:
    score = _number(obj, "sentiment")
    if score is None:
        return None
    if etype != "comment":
        raise _Reject(
            "bad_value",
            "sentiment",
            f"field 'sentiment' = {show(score)} is only allowed on comment events, not {etype}",
        )
    if not -1.0 <= score <= 1.0:
        raise _Reject(
            "bad_value", "sentiment", f"field 'sentiment' = {show(score)} is outside [-1, 1]"
        )
    return score
