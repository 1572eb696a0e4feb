"""Reading log files (CSV, JSONL, Parquet) into columns, and how a bad row or file is told.

`read_logs` (replay.py) maps the columns these readers return."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass


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


def missing_columns(path: Path, wanted: Iterable[str], have: Iterable[str]) -> None:
    have = list(have)
    missing = [c for c in wanted if c not in have]
    if missing:
        raise ReplayError(f"{path.name}: mapped column(s) {missing} not in the file; it has {have}")


def read_csv(path: Path, wanted: list[str], bad: list[BadRow]) -> tuple[dict[str, list], list[int]]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        dialect = "excel-tab" if path.suffix.lower() == ".tsv" else "excel"
        reader = csv.reader(f, dialect)
        header = next(reader, None)
        if header is None:
            raise ReplayError(f"{path.name} is empty (no header row)")
        header = [h.strip() for h in header]
        missing_columns(path, wanted, header)
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


def read_csv_arrow(path: Path, wanted: list[str]) -> dict[str, list] | None:
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
    missing_columns(path, wanted, names)
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


def read_jsonl(
    path: Path, wanted: list[str], bad: list[BadRow]
) -> tuple[dict[str, list], list[int]]:
    cols: dict[str, list[Any]] = {c: [] for c in wanted}
    seen: set[str] = set()
    lines: list[int] = []
    with path.open(encoding="utf-8-sig") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            lines.append(lineno)
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                obj = None
                bad.append(
                    BadRow(len(lines), lineno, "*", line.strip()[:80], f"not JSON: {exc.msg}")
                )
            if obj is not None and not isinstance(obj, dict):
                bad.append(BadRow(len(lines), lineno, "*", line.strip()[:80], "not a JSON object"))
                obj = None
            obj = obj or {}
            seen.update(obj)
            for c in wanted:
                value = _lookup(obj, c)
                if value is not None:
                    seen.add(c)
                cols[c].append(value)
    if lines:
        missing_columns(path, wanted, [c for c in wanted if c in seen] + sorted(seen - set(wanted)))
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


def read_parquet(path: Path, wanted: list[str]) -> tuple[dict[str, list], None]:
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
        missing_columns(path, wanted, schema.names)
        table = pq.read_table(path, columns=wanted)
    except (OSError, ValueError) as exc:
        if isinstance(exc, ReplayError):
            raise
        raise ReplayError(f"cannot read {path.name} as Parquet: {exc}") from None
    return {c: table.column(c).combine_chunks() for c in wanted}, None
