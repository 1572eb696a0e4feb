"""The creative space as model tensors: encode creatives to vectors and decode them back.

Pure numpy, no torch; one implementation for the trainer (strict: a creative that does not
fit is an `EncodingError`) and inference (`encode_lenient`: unknown or missing values encode
as zeros, so a stale creative never fails a request). The JSON form (`to_json`) is
`metadata.json`'s `encoding` (docs/contracts.md, "Model artifacts"):
categorical = one-hot over `values`; numeric = (x - min) / (max - min) in [0, 1]; color = three
columns r, g, b in [0, 1] (`#rrggbb` = round(255 * c)).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from numbers import Real
from typing import Any

import numpy as np

__all__ = ["Column", "CreativeSpace", "EncodingError", "segment_onehot"]

_HEX = re.compile(r"^#?([0-9a-fA-F]{6})$")
_KINDS = ("categorical", "numeric", "color")


class EncodingError(ValueError):
    """A campaign declaration or creative that does not fit the creative space."""


@dataclass(frozen=True)
class Column:
    """One attribute's block of columns in the encoded vector."""

    name: str
    kind: str
    offset: int
    width: int
    values: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "offset": self.offset,
            "width": self.width,
        }
        if self.kind == "categorical":
            out["values"] = list(self.values)
        elif self.kind == "numeric":
            out["min"], out["max"] = self.min, self.max
        return out


class CreativeSpace:
    """Columns in declaration order; categorical blocks also fix the Gumbel column order."""

    def __init__(self, columns: Sequence[Column]) -> None:
        self.columns = tuple(columns)
        offset = 0
        for col in self.columns:
            if col.offset != offset:
                raise EncodingError(f"column {col.name} starts at {col.offset}, expected {offset}")
            offset += col.width
        self.creative_dim = offset
        self.gumbel_dim = sum(c.width for c in self.columns if c.kind == "categorical")

    @classmethod
    def from_attributes(cls, attributes: Iterable[Mapping[str, Any]]) -> CreativeSpace:
        """From a Campaign record's `attributes` (name, kind, values, min, max)."""
        columns: list[Column] = []
        offset = 0
        seen: set[str] = set()
        for attr in attributes:
            name, kind = str(attr.get("name", "")), str(attr.get("kind", ""))
            if not name or name in seen:
                raise EncodingError(f"attribute name {name!r} is empty or declared twice")
            seen.add(name)
            if kind == "categorical":
                values = tuple(str(v) for v in attr.get("values") or ())
                if len(values) < 1 or len(set(values)) != len(values):
                    raise EncodingError(
                        f"categorical attribute {name!r} needs distinct values, got {values!r}"
                    )
                col = Column(name, kind, offset, len(values), values=values)
            elif kind == "numeric":
                lo, hi = attr.get("min"), attr.get("max")
                if lo is None or hi is None or float(hi) < float(lo):
                    raise EncodingError(
                        f"numeric attribute {name!r} needs min <= max, got min={lo} max={hi}"
                    )
                col = Column(name, kind, offset, 1, min=float(lo), max=float(hi))
            elif kind == "color":
                col = Column(name, kind, offset, 3)
            else:
                raise EncodingError(f"attribute {name!r} has kind {kind!r}; use one of {_KINDS}")
            columns.append(col)
            offset += col.width
        if not columns:
            raise EncodingError("the campaign declares no attributes; nothing to generate")
        return cls(columns)

    @classmethod
    def from_json(cls, encoding: Iterable[Mapping[str, Any]]) -> CreativeSpace:
        """From `metadata.json`'s `encoding` list; an entry that breaks the contract (width,
        values, finite min < max) is an `EncodingError` naming it."""
        columns = [_column(c) for c in encoding]
        if len({c.name for c in columns}) != len(columns):
            raise EncodingError("duplicate attribute names in encoding")
        return cls(columns)

    def to_json(self) -> list[dict[str, Any]]:
        return [c.to_json() for c in self.columns]

    def categorical_blocks(self) -> list[tuple[int, int]]:
        """(offset, width) of each categorical block, in encoding order."""
        return [(c.offset, c.width) for c in self.columns if c.kind == "categorical"]

    def encode(self, attributes: Mapping[str, Any]) -> np.ndarray:
        """One creative's attributes → float32 vector. Numeric values are clipped to range."""
        out = np.zeros(self.creative_dim, dtype=np.float32)
        for col in self.columns:
            if col.name not in attributes:
                raise EncodingError(f"creative has no value for attribute {col.name!r}")
            value = attributes[col.name]
            if col.kind == "categorical":
                try:
                    out[col.offset + col.values.index(str(value))] = 1.0
                except ValueError:
                    raise EncodingError(
                        f"{col.name}={value!r} is not one of {list(col.values)}"
                    ) from None
            elif col.kind == "numeric":
                try:
                    x = float(value)
                except (TypeError, ValueError):
                    raise EncodingError(f"{col.name}={value!r} is not a number") from None
                if not np.isfinite(x):
                    raise EncodingError(f"{col.name}={value!r} is not a finite number")
                span = col.max - col.min  # type: ignore[operator]
                out[col.offset] = 0.0 if span == 0 else np.clip((x - col.min) / span, 0.0, 1.0)
            else:
                m = _HEX.match(str(value))
                if not m:
                    raise EncodingError(f"{col.name}={value!r} is not a '#rrggbb' color")
                rgb = bytes.fromhex(m.group(1))
                out[col.offset : col.offset + 3] = np.frombuffer(rgb, np.uint8) / 255.0
        return out

    def encode_many(self, creatives: Iterable[Mapping[str, Any]]) -> np.ndarray:
        rows = [self.encode(c) for c in creatives]
        return np.stack(rows) if rows else np.zeros((0, self.creative_dim), np.float32)

    def decode(self, vector: Sequence[float] | np.ndarray) -> dict[str, str | float]:
        """A vector (one-hot or logits for categorical blocks) → attribute values."""
        v = np.asarray(vector, dtype=np.float64)
        if v.shape != (self.creative_dim,):
            raise EncodingError(f"vector has shape {v.shape}, expected ({self.creative_dim},)")
        return self.decode_many(v[None, :])[0]

    def decode_many(
        self, matrix: np.ndarray, digits: int | None = None
    ) -> list[dict[str, str | float]]:
        """Rows → attribute maps (values as in Creative records); numeric values rounded to
        `digits` decimals when given. Rows keep their dtype (float32 from ONNX)."""
        rows = np.asarray(matrix)
        out: list[dict[str, str | float]] = [{} for _ in range(rows.shape[0])]
        for col in self.columns:
            part = rows[:, col.offset : col.offset + col.width]
            if col.kind == "categorical":
                for row, i in zip(out, part.argmax(axis=1), strict=True):
                    row[col.name] = col.values[int(i)]
            elif col.kind == "numeric":
                lo, hi = float(col.min), float(col.max)  # type: ignore[arg-type]
                vals = lo + np.clip(part[:, 0], 0.0, 1.0) * (hi - lo)
                for row, x in zip(out, vals, strict=True):
                    row[col.name] = float(x) if digits is None else round(float(x), digits)
            else:
                rgb = np.rint(255 * np.clip(part, 0.0, 1.0)).astype(int)
                for row, (r, g, b) in zip(out, rgb, strict=True):
                    row[col.name] = f"#{r:02x}{g:02x}{b:02x}"
        return out

    def encode_lenient(self, creatives: Sequence[Mapping[str, object]]) -> np.ndarray:
        """Attribute maps (or Creative records) → float32 rows; unknown or missing values
        encode as zeros (inference scores what it has; the trainer uses `encode`)."""
        x = np.zeros((len(creatives), self.creative_dim), dtype=np.float32)
        for r, creative in enumerate(creatives):
            inner = creative.get("attributes")
            attrs = inner if isinstance(inner, Mapping) else creative
            for col in self.columns:
                value = attrs.get(col.name)
                if col.kind == "categorical":
                    if isinstance(value, str) and value in col.values:
                        x[r, col.offset + col.values.index(value)] = 1.0
                elif col.kind == "numeric":
                    if (
                        isinstance(value, Real)
                        and not isinstance(value, bool)
                        and math.isfinite(float(value))
                    ):
                        lo, hi = col.min, col.max
                        x[r, col.offset] = np.clip((float(value) - lo) / (hi - lo), 0, 1)  # type: ignore[operator]
                elif isinstance(value, str) and len(value) == 7 and value.startswith("#"):
                    try:
                        x[r, col.offset : col.offset + 3] = [
                            int(value[i : i + 2], 16) / 255.0 for i in (1, 3, 5)
                        ]
                    except ValueError:
                        pass
        return x

    def canonical(self, vector: np.ndarray) -> np.ndarray:
        """Re-encode a decoded vector: what the creative actually is once rendered."""
        return self.encode(self.decode(vector))


def segment_onehot(segments: Sequence[str], names: Sequence[str]) -> np.ndarray:
    """[len(names), len(segments)] one-hot; an unknown segment is an all-zero row."""
    index = {s: i for i, s in enumerate(segments)}
    out = np.zeros((len(names), len(segments)), dtype=np.float32)
    for row, name in enumerate(names):
        i = index.get(name)
        if i is not None:
            out[row, i] = 1.0
    return out


def _column(raw: Mapping[str, Any]) -> Column:
    """One `encoding` entry, checked against the contract."""
    try:
        name, kind = str(raw["name"]), str(raw["kind"])
        offset, width = int(raw["offset"]), int(raw["width"])
        if kind == "categorical":
            values = tuple(str(v) for v in raw["values"])
            if width != len(values) or width < 1:
                raise ValueError(f"width {width} != {len(values)} values")
            return Column(name, kind, offset, width, values=values)
        if kind == "numeric":
            lo, hi = float(raw["min"]), float(raw["max"])
            if width != 1 or not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
                raise ValueError("numeric needs width 1 and finite min < max")
            return Column(name, kind, offset, width, min=lo, max=hi)
        if kind == "color":
            if width != 3:
                raise ValueError("color needs width 3")
            return Column(name, kind, offset, width)
        raise ValueError(f"unknown kind {kind!r}")
    except (KeyError, TypeError, ValueError) as exc:
        raise EncodingError(f"encoding entry {dict(raw)!r}: {exc}") from exc
