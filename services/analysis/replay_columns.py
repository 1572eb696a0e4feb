"""Column values of logged decisions as arrays: text, numbers, booleans, timestamps, segments.

The parsing rules `read_logs` (replay.py) applies to each column it maps."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from services.analysis.dataset import encode_strings
from services.common.segment import segment_of

if TYPE_CHECKING:
    import pyarrow as pa

_SECONDS_BELOW = 1e11
_NUMBER = r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$"
_TRUE = {"true": 1.0, "false": 0.0, "yes": 1.0, "no": 0.0}


def text(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return str(v).strip()


def texts(values: list[Any]) -> np.ndarray:
    """Column as stripped strings ('' for missing), object array."""
    import pyarrow.compute as pc

    strings = as_arrow_strings(values)
    if strings is not None:
        trimmed = pc.fill_null(pc.utf8_trim_whitespace(strings), "")
        return np.array(trimmed.to_numpy(zero_copy_only=False), dtype=object)
    return np.array([text(v) for v in values], dtype=object)


def as_arrow_strings(values: list[Any] | pa.Array) -> pa.Array | None:
    import pyarrow as pa

    if isinstance(values, pa.Array):
        return values if pa.types.is_string(values.type) else values.cast(pa.string())
    try:
        return pa.array(values, type=pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None


def floats(
    values: list[Any], report: Any, column: str, ok: np.ndarray, booleans: bool = False
) -> np.ndarray:
    """Parse a column to float64; unparseable or non-finite values are reported as bad rows."""
    try:
        out = numbers(values)
    except ValueError:
        out = parse_floats(values, booleans)
    bad = ~np.isfinite(out)
    report(
        np.flatnonzero(bad & ok),
        column,
        values,
        "not a number" if not booleans else "not a number or true/false",
    )
    return out


def at(values: list[Any] | pa.Array, i: int | np.integer) -> Any:
    v = values[int(i)]
    return v.as_py() if hasattr(v, "as_py") else v


def numbers(values: list[Any] | pa.Array) -> np.ndarray:
    """Fast path: a writable float64 array when every value is a number, else ValueError."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(values, pa.Array):
        try:
            return np.array(pc.cast(values, pa.float64()), dtype=np.float64)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise ValueError(str(exc)) from None
    try:
        return np.array(values, dtype=np.float64)
    except TypeError as exc:
        raise ValueError(str(exc)) from None


def parse_floats(values: list[Any], booleans: bool) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    strings = as_arrow_strings(values)
    if strings is None:  # mixed Python types (JSONL): parse one by one
        out = np.full(len(values), np.nan)
        for i, v in enumerate(values):
            key = v.strip().lower() if isinstance(v, str) else None
            try:
                out[i] = _TRUE[key] if booleans and key in _TRUE else float(v)
            except (ValueError, TypeError):
                pass
        return out
    trimmed = pc.utf8_trim_whitespace(strings)
    is_num = pc.fill_null(pc.match_substring_regex(trimmed, _NUMBER), False)
    out = np.array(pc.cast(pc.if_else(is_num, trimmed, "nan"), pa.float64()), dtype=np.float64)
    if booleans:
        lower = pc.utf8_lower(trimmed)
        for word, value in _TRUE.items():
            hit = pc.fill_null(pc.equal(lower, word), False).to_numpy(zero_copy_only=False)
            out[hit] = value
    return out


def timestamps(values: list[Any], report: Any, column: str, ok: np.ndarray) -> np.ndarray:
    try:
        x = numbers(values)
    except ValueError:
        x = parse_floats(values, booleans=False)
    numeric = np.isfinite(x)
    out = np.where(np.abs(x) < _SECONDS_BELOW, x * 1000, x)
    out = np.where(numeric, out, 0).astype(np.int64)
    bad = np.zeros(len(values), dtype=bool)
    for i in np.flatnonzero(~numeric):
        v = at(values, i)
        try:
            dt = v if isinstance(v, datetime) else datetime.fromisoformat(str(v).strip())
        except ValueError:
            bad[i] = True
            continue
        dt = dt if dt.tzinfo else dt.replace(tzinfo=UTC)
        out[i] = int(dt.timestamp() * 1000)
    report(np.flatnonzero(bad & ok), column, values, "not a timestamp (epoch s/ms or ISO-8601)")
    return out


def context_keys(columns: tuple[str, ...]) -> dict[str, str]:
    """Context key per column: the last dotted component (`context.country` -> `country`),
    unless two columns would share it."""
    short = {c: c.rsplit(".", 1)[-1] for c in columns}
    if len(set(short.values())) < len(short):
        return {c: c for c in columns}
    return short


def segments(keys: tuple[str, ...], values: Mapping[str, np.ndarray], n: int) -> np.ndarray:
    """Segment key per row, computed once per distinct combination of context values."""
    if not keys:
        return np.full(n, "*", dtype=object)
    ordered = sorted(keys)
    combined = np.zeros(n, dtype=np.int64)
    vocabs = []
    for k in ordered:
        vocab, codes = encode_strings(values[k])
        vocabs.append(vocab)
        combined = combined * len(vocab) + codes
    uniq, inverse = np.unique(combined, return_inverse=True)
    labels = []
    for code in uniq:
        parts = {}
        for k, vocab in zip(reversed(ordered), reversed(vocabs), strict=True):
            code, i = divmod(int(code), len(vocab))
            parts[k] = str(vocab[i])
        labels.append(segment_of(ordered, parts))
    return np.array(labels, dtype=object)[inverse.reshape(-1)]


def ranges(rows: list[int], limit: int = 12) -> str:
    parts: list[str] = []
    start = prev = rows[0]
    for r in [*rows[1:], None]:  # type: ignore[list-item]
        if r is not None and r == prev + 1:
            prev = r
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if r is not None:
            start = prev = r
    shown = ", ".join(parts[:limit])
    return shown + (f", … ({len(parts) - limit} more ranges)" if len(parts) > limit else "")
