"""Timestamps as apps send them (epoch ms, digit strings, ISO-8601, datetimes) → epoch ms."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

__all__ = ["datetime_ms", "parse_timestamp_ms"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_EPOCH_DIGITS = re.compile(r"^-?\d{1,19}$")


def parse_timestamp_ms(value: object) -> int:
    """Epoch milliseconds from an int/float (epoch ms), a digit string, an ISO-8601 string or
    an aware/naive datetime (naive means UTC). Raises ValueError/TypeError when it is none."""
    if isinstance(value, bool):
        raise TypeError("a boolean is not a timestamp")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("not a finite number")
        return math.floor(value)
    if isinstance(value, datetime):
        return datetime_ms(value)
    if isinstance(value, str):
        text = value.strip()
        if _EPOCH_DIGITS.match(text):
            return int(text)
        return datetime_ms(datetime.fromisoformat(text))
    raise TypeError(f"a {type(value).__name__} is not a timestamp")


def datetime_ms(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - _EPOCH) // _MS
