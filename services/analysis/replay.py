"""Bring your own logs: CSV, JSONL or Parquet with a column mapping, into `LoggedData`.

The mapping names the file's columns (inline or as a JSON/YAML file):

    action=ad_id,reward=clicked,propensity=p,context=country+device,timestamp=ts,position=slot

Required: action, reward, propensity. Optional: context (one or more columns, joined by `+`),
timestamp (epoch seconds or milliseconds — numbers below 1e11 are seconds — or ISO-8601),
position, user, arm. Nothing is dropped silently: a missing column is an error naming the
columns the file has, and every unparseable row is reported by its number (1 = first data row;
`line` is the line in the file for CSV/JSONL). With `on_bad="fail"` any bad row is an error; with
`on_bad="skip"` bad rows are left out and listed in the result.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import yaml

from services.analysis.dataset import LoggedData, encode_strings
from services.common.segment import segment_of

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["BadRow", "ColumnMapping", "ReplayError", "ReplayResult", "read_logs"]

_MAX_LISTED = 20
_SECONDS_BELOW = 1e11
_NUMBER = r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$"
_TRUE = {"true": 1.0, "false": 0.0, "yes": 1.0, "no": 0.0}


class ReplayError(ValueError):
    """The file cannot be read as logs; the message says what and where."""


@dataclass(frozen=True)
class BadRow:
    row: int  # 1-based data row
    line: int | None  # line in the file (CSV/JSONL)
    column: str
    value: str
    reason: str

    def __str__(self) -> str:
        where = f"row {self.row}" + (f" (line {self.line})" if self.line else "")
        return f"{where}: {self.column}={self.value!r}: {self.reason}"


@dataclass(frozen=True)
class ColumnMapping:
    action: str
    reward: str
    propensity: str
    context: tuple[str, ...] = ()
    timestamp: str | None = None
    position: str | None = None
    user: str | None = None
    arm: str | None = None

    @classmethod
    def parse(cls, spec: str | Mapping[str, Any]) -> ColumnMapping:
        """From `k=v,k=v` (context joined by `+`), a dict, or a JSON/YAML file path."""
        if isinstance(spec, str):
            path = Path(spec)
            if "=" not in spec and path.suffix in (".json", ".yaml", ".yml"):
                try:
                    spec = yaml.safe_load(path.read_text())
                except (OSError, yaml.YAMLError) as exc:
                    raise ReplayError(f"cannot read mapping file {path}: {exc}") from None
            else:
                pairs = [p.split("=", 1) for p in spec.split(",") if p.strip()]
                if any(len(p) != 2 for p in pairs):
                    raise ReplayError(
                        f"mapping {spec!r}: expected role=column pairs, comma-separated"
                    )
                spec = {k.strip(): v.strip() for k, v in pairs}
        if not isinstance(spec, Mapping):
            raise ReplayError("mapping must be role=column pairs or a JSON/YAML object")
        known = {
            "action",
            "reward",
            "propensity",
            "context",
            "timestamp",
            "position",
            "user",
            "arm",
        }
        unknown = set(spec) - known
        if unknown:
            raise ReplayError(
                f"mapping has unknown role(s) {sorted(unknown)}; known: {sorted(known)}"
            )
        missing = [r for r in ("action", "reward", "propensity") if not spec.get(r)]
        if missing:
            raise ReplayError(f"mapping must name the column for {', '.join(missing)}")
        ctx = spec.get("context") or ()
        if isinstance(ctx, str):
            ctx = tuple(c.strip() for c in ctx.replace(";", "+").split("+") if c.strip())
        return cls(
            action=str(spec["action"]),
            reward=str(spec["reward"]),
            propensity=str(spec["propensity"]),
            context=tuple(str(c) for c in ctx),
            timestamp=spec.get("timestamp"),
            position=spec.get("position"),
            user=spec.get("user"),
            arm=spec.get("arm"),
        )

    def columns(self) -> dict[str, str]:
        """{column: role} of every mapped column (context columns as `context`)."""
        out = {c: "context" for c in self.context}
        for role in ("action", "reward", "propensity", "timestamp", "position", "user", "arm"):
            col = getattr(self, role)
            if col:
                out[col] = role
        return out


@dataclass(frozen=True)
class ReplayResult:
    data: LoggedData
    total_rows: int
    bad_rows: tuple[BadRow, ...] = field(default_factory=tuple)

    @property
    def bad_row_numbers(self) -> list[int]:
        return sorted({b.row for b in self.bad_rows})


def read_logs(
    path: str | Path,
    mapping: ColumnMapping,
    *,
    fmt: Literal["auto", "csv", "jsonl", "parquet"] = "auto",
    on_bad: Literal["fail", "skip"] = "fail",
) -> ReplayResult:
    """Read a log file into `LoggedData`, validating every row."""
    path = Path(path)
    if not path.is_file():
        raise ReplayError(f"log file {path} does not exist")
    kind = fmt if fmt != "auto" else _kind(path)
    return _load(path, mapping, kind, on_bad, fast=kind == "csv")


def _load(
    path: Path, mapping: ColumnMapping, kind: str, on_bad: Literal["fail", "skip"], fast: bool
) -> ReplayResult:
    """Parse and validate. CSV first goes through Arrow's C++ reader (`fast`); a file with any
    bad row is read again by the line-exact Python reader, so every bad row gets its line."""
    wanted = list(mapping.columns())
    bad: list[BadRow] = []
    fast_cols = _read_csv_arrow(path, wanted) if fast else None
    if fast_cols is not None:
        cols, lines = fast_cols, None
    elif kind == "csv":
        cols, lines = _read_csv(path, wanted, bad)
    elif kind == "jsonl":
        cols, lines = _read_jsonl(path, wanted, bad)
    else:
        cols, lines = _read_parquet(path, wanted)
    n = len(lines) if lines is not None else len(next(iter(cols.values()))) if cols else 0
    ok = np.ones(n, dtype=bool)
    structural = {b.row for b in bad}
    for b in structural:
        ok[b - 1] = False

    def report(rows: np.ndarray, column: str, values: list[Any], reason: str) -> None:
        for i in rows:
            bad.append(
                BadRow(
                    int(i) + 1,
                    None if lines is None else int(lines[i]),
                    column,
                    str(_at(values, i)),
                    reason,
                )
            )
        ok[rows] = False

    prop = _floats(cols[mapping.propensity], report, mapping.propensity, ok)
    with np.errstate(invalid="ignore"):
        out = ok & ~((prop > 0) & (prop <= 1))
    report(
        np.flatnonzero(out),
        mapping.propensity,
        cols[mapping.propensity],
        "propensity must be in (0, 1]",
    )
    reward = _floats(cols[mapping.reward], report, mapping.reward, ok, booleans=True)
    action = _texts(cols[mapping.action])
    report(
        np.flatnonzero(ok & (action == "")), mapping.action, cols[mapping.action], "action is empty"
    )
    ts = np.zeros(n, dtype=np.int64)
    if mapping.timestamp:
        ts = _timestamps(cols[mapping.timestamp], report, mapping.timestamp, ok)
    extra: dict[str, np.ndarray] = {"row": np.arange(1, n + 1)}
    if mapping.position:
        pos = _floats(cols[mapping.position], report, mapping.position, ok)
        with np.errstate(invalid="ignore"):
            badpos = ok & ~((pos >= 0) & (pos == np.floor(pos)))
        report(
            np.flatnonzero(badpos),
            mapping.position,
            cols[mapping.position],
            "position must be a whole number >= 0",
        )
        extra["position"] = np.nan_to_num(pos).astype(np.int64)
    if mapping.user:
        extra["user"] = _texts(cols[mapping.user])
    ctx_values = {}
    for c, key in _context_keys(mapping.context).items():
        vals = _texts(cols[c])
        vals[vals == ""] = "*"
        ctx_values[key] = extra[f"context.{key}"] = vals
    context = _segments(tuple(ctx_values), ctx_values, n)
    arm = None
    if mapping.arm:
        arm = _texts(cols[mapping.arm])
        arm[arm == ""] = "logged"

    bad.sort(key=lambda b: (b.row, b.column))
    if bad and fast_cols is not None:
        return _load(path, mapping, kind, on_bad, fast=False)
    if bad and on_bad == "fail":
        rows = sorted({b.row for b in bad})
        listed = "\n  ".join(str(b) for b in bad[:_MAX_LISTED])
        more = f"\n  … and {len(bad) - _MAX_LISTED} more" if len(bad) > _MAX_LISTED else ""
        raise ReplayError(
            f"{path}: {len(rows)} of {n} rows are bad (rows {_ranges(rows)}):\n  {listed}{more}\n"
            "fix them, or pass --skip-bad-rows to leave them out (they are still listed)"
        )
    data = LoggedData.from_columns(
        context=context[ok],
        action=action[ok],
        reward=reward[ok],
        propensity=prop[ok],
        timestamp_ms=ts[ok],
        arm=None if arm is None else arm[ok],
        extra={k: v[ok] for k, v in extra.items()},
    )
    return ReplayResult(data, n, tuple(bad))


def _kind(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if ".parquet" in suffixes or ".pq" in suffixes:
        return "parquet"
    if ".jsonl" in suffixes or ".ndjson" in suffixes or ".json" in suffixes:
        return "jsonl"
    if ".csv" in suffixes or ".tsv" in suffixes:
        return "csv"
    raise ReplayError(f"cannot tell the format of {path.name}; pass --format csv|jsonl|parquet")


def _missing(path: Path, wanted: Iterable[str], have: Iterable[str]) -> None:
    have = list(have)
    missing = [c for c in wanted if c not in have]
    if missing:
        raise ReplayError(f"{path.name}: mapped column(s) {missing} not in the file; it has {have}")


def _read_csv(
    path: Path, wanted: list[str], bad: list[BadRow]
) -> tuple[dict[str, list], list[int]]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        dialect = "excel-tab" if path.suffix.lower() == ".tsv" else "excel"
        reader = csv.reader(f, dialect)
        header = next(reader, None)
        if header is None:
            raise ReplayError(f"{path.name} is empty (no header row)")
        header = [h.strip() for h in header]
        _missing(path, wanted, header)
        idx = [header.index(c) for c in wanted]
        width = len(header)
        cols: list[list[str]] = [[] for _ in wanted]
        lines: list[int] = []
        for row in reader:
            line = reader.line_num
            lines.append(line)
            if len(row) != width:
                if not row:
                    bad.append(BadRow(len(lines), line, "*", "", "empty line"))
                else:
                    bad.append(
                        BadRow(
                            len(lines),
                            line,
                            "*",
                            ",".join(row)[:80],
                            f"has {len(row)} fields, the header has {width}",
                        )
                    )
                row = [""] * width
            for col, i in zip(cols, idx, strict=True):
                col.append(row[i])
    return dict(zip(wanted, cols, strict=True)), lines


def _read_csv_arrow(path: Path, wanted: list[str]) -> dict[str, list] | None:
    """Every wanted column as strings via pyarrow.csv; None when a row is malformed (wrong field
    count, empty line, a newline inside quotes) or Arrow cannot read the file."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    with path.open(newline="", encoding="utf-8-sig") as f:
        header = next(
            csv.reader(f, "excel-tab" if path.suffix.lower() == ".tsv" else "excel"), None
        )
    if header is None:
        raise ReplayError(f"{path.name} is empty (no header row)")
    names = [h.strip() for h in header]
    _missing(path, wanted, names)
    if len(set(names)) != len(names):
        return None
    malformed: list[object] = []

    def on_invalid(row: object) -> str:
        malformed.append(row)
        return "skip"

    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1),
            parse_options=pacsv.ParseOptions(
                delimiter="\t" if path.suffix.lower() == ".tsv" else ",",
                ignore_empty_lines=False,
                invalid_row_handler=on_invalid,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in wanted},
                include_columns=wanted,
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError):
        return None
    if malformed:
        return None
    return {c: table.column(c).combine_chunks() for c in wanted}


def _read_jsonl(
    path: Path, wanted: list[str], bad: list[BadRow]
) -> tuple[dict[str, list], list[int]]:
    cols: dict[str, list[Any]] = {c: [] for c in wanted}
    seen: set[str] = set()
    lines: list[int] = []
    with path.open(encoding="utf-8-sig") as f:
        for lineno, text in enumerate(f, start=1):
            if not text.strip():
                continue
            lines.append(lineno)
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                obj = None
                bad.append(
                    BadRow(len(lines), lineno, "*", text.strip()[:80], f"not JSON: {exc.msg}")
                )
            if obj is not None and not isinstance(obj, dict):
                bad.append(BadRow(len(lines), lineno, "*", text.strip()[:80], "not a JSON object"))
                obj = None
            obj = obj or {}
            seen.update(obj)
            for c in wanted:
                value = _lookup(obj, c)
                if value is not None:
                    seen.add(c)
                cols[c].append(value)
    if lines:
        _missing(path, wanted, [c for c in wanted if c in seen] + sorted(seen - set(wanted)))
    return cols, lines


def _lookup(obj: dict[str, Any], column: str) -> Any:
    """obj[column], else a dotted path into nested objects (`context.country`)."""
    if column in obj or "." not in column:
        return obj.get(column)
    value: Any = obj
    for part in column.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _read_parquet(path: Path, wanted: list[str]) -> tuple[dict[str, list], None]:
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
        _missing(path, wanted, schema.names)
        table = pq.read_table(path, columns=wanted)
    except (OSError, ValueError) as exc:
        if isinstance(exc, ReplayError):
            raise
        raise ReplayError(f"cannot read {path.name} as Parquet: {exc}") from None
    return {c: table.column(c).combine_chunks() for c in wanted}, None


def _text(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return str(v).strip()


def _texts(values: list[Any]) -> np.ndarray:
    """Column as stripped strings ('' for missing), object array."""
    import pyarrow.compute as pc

    strings = _as_arrow_strings(values)
    if strings is not None:
        trimmed = pc.fill_null(pc.utf8_trim_whitespace(strings), "")
        return np.array(trimmed.to_numpy(zero_copy_only=False), dtype=object)
    return np.array([_text(v) for v in values], dtype=object)


def _as_arrow_strings(values: list[Any] | pa.Array) -> pa.Array | None:
    import pyarrow as pa

    if isinstance(values, pa.Array):
        return values if pa.types.is_string(values.type) else values.cast(pa.string())
    try:
        return pa.array(values, type=pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None


def _floats(
    values: list[Any], report: Any, column: str, ok: np.ndarray, booleans: bool = False
) -> np.ndarray:
    """Parse a column to float64; unparseable or non-finite values are reported as bad rows."""
    try:
        out = _numbers(values)
    except ValueError:
        out = _parse_floats(values, booleans)
    bad = ~np.isfinite(out)
    report(
        np.flatnonzero(bad & ok),
        column,
        values,
        "not a number" if not booleans else "not a number or true/false",
    )
    return out


def _at(values: list[Any] | pa.Array, i: int | np.integer) -> Any:
    v = values[int(i)]
    return v.as_py() if hasattr(v, "as_py") else v


def _numbers(values: list[Any] | pa.Array) -> np.ndarray:
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


def _parse_floats(values: list[Any], booleans: bool) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    strings = _as_arrow_strings(values)
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


def _timestamps(values: list[Any], report: Any, column: str, ok: np.ndarray) -> np.ndarray:
    try:
        x = _numbers(values)
    except ValueError:
        x = _parse_floats(values, booleans=False)
    numeric = np.isfinite(x)
    out = np.where(np.abs(x) < _SECONDS_BELOW, x * 1000, x)
    out = np.where(numeric, out, 0).astype(np.int64)
    bad = np.zeros(len(values), dtype=bool)
    for i in np.flatnonzero(~numeric):
        v = _at(values, i)
        try:
            dt = v if isinstance(v, datetime) else datetime.fromisoformat(str(v).strip())
        except ValueError:
            bad[i] = True
            continue
        dt = dt if dt.tzinfo else dt.replace(tzinfo=UTC)
        out[i] = int(dt.timestamp() * 1000)
    report(np.flatnonzero(bad & ok), column, values, "not a timestamp (epoch s/ms or ISO-8601)")
    return out


def _context_keys(columns: tuple[str, ...]) -> dict[str, str]:
    """Context key per column: the last dotted component (`context.country` -> `country`),
    unless two columns would share it."""
    short = {c: c.rsplit(".", 1)[-1] for c in columns}
    if len(set(short.values())) < len(short):
        return {c: c for c in columns}
    return short


def _segments(keys: tuple[str, ...], values: Mapping[str, np.ndarray], n: int) -> np.ndarray:
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


def _ranges(rows: list[int], limit: int = 12) -> str:
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
