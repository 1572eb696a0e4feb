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

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import yaml

from services.analysis.dataset import LoggedData
from services.analysis.replay_columns import (
    at,
    context_keys,
    floats,
    ranges,
    segments,
    texts,
    timestamps,
)
from services.analysis.replay_files import (
    BadRow,
    ReplayError,
    read_csv,
    read_csv_arrow,
    read_jsonl,
    read_parquet,
)

if TYPE_CHECKING:
    pass

__all__ = ["BadRow", "ColumnMapping", "ReplayError", "ReplayResult", "read_logs"]

_MAX_LISTED = 20


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
    fast_cols = read_csv_arrow(path, wanted) if fast else None
    if fast_cols is not None:
        cols, lines = fast_cols, None
    elif kind == "csv":
        cols, lines = read_csv(path, wanted, bad)
    elif kind == "jsonl":
        cols, lines = read_jsonl(path, wanted, bad)
    else:
        cols, lines = read_parquet(path, wanted)
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
                    str(at(values, i)),
                    reason,
                )
            )
        ok[rows] = False

    prop = floats(cols[mapping.propensity], report, mapping.propensity, ok)
    with np.errstate(invalid="ignore"):
        out = ok & ~((prop > 0) & (prop <= 1))
    report(
        np.flatnonzero(out),
        mapping.propensity,
        cols[mapping.propensity],
        "propensity must be in (0, 1]",
    )
    reward = floats(cols[mapping.reward], report, mapping.reward, ok, booleans=True)
    action = texts(cols[mapping.action])
    report(
        np.flatnonzero(ok & (action == "")), mapping.action, cols[mapping.action], "action is empty"
    )
    ts = np.zeros(n, dtype=np.int64)
    if mapping.timestamp:
        ts = timestamps(cols[mapping.timestamp], report, mapping.timestamp, ok)
    extra: dict[str, np.ndarray] = {"row": np.arange(1, n + 1)}
    if mapping.position:
        pos = floats(cols[mapping.position], report, mapping.position, ok)
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
        extra["user"] = texts(cols[mapping.user])
    ctx_values = {}
    for c, key in context_keys(mapping.context).items():
        vals = texts(cols[c])
        vals[vals == ""] = "*"
        ctx_values[key] = extra[f"context.{key}"] = vals
    context = segments(tuple(ctx_values), ctx_values, n)
    arm = None
    if mapping.arm:
        arm = texts(cols[mapping.arm])
        arm[arm == ""] = "logged"

    bad.sort(key=lambda b: (b.row, b.column))
    if bad and fast_cols is not None:
        return _load(path, mapping, kind, on_bad, fast=False)
    if bad and on_bad == "fail":
        rows = sorted({b.row for b in bad})
        listed = "\n  ".join(str(b) for b in bad[:_MAX_LISTED])
        more = f"\n  … and {len(bad) - _MAX_LISTED} more" if len(bad) > _MAX_LISTED else ""
        raise ReplayError(
            f"{path}: {len(rows)} of {n} rows are bad (rows {ranges(rows)}):\n  {listed}{more}\n"
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
