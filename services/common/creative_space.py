"""The creative space as model tensors: encode creatives to vectors and decode them back.

Pure numpy, no torch; one implementation for the trainer (strict: a creative that does not
fit is an `EncodingError`) and inference (`encode_lenient`: unknown or missing values encode
as zeros, so a stale creative never fails a request). The JSON form (`to_json`) is
`metadata.json`'s `encoding` (docs/contracts.md, "Model artifacts"):
categorical = one-hot over `values`; numeric = (x - min) / (max - min) in [0, 1]; color = three
columns r, g, b in [0, 1] (`#rrggbb` = round(255 * c)); circular = two columns
(0.5 + 0.5 cos θ, 0.5 + 0.5 sin θ), θ = 2π (x - min) / (max - min); sequence = `length` steps,
each the one-hot of every field in declared order (services/common/attribute_kinds.py).

`blocks()` is what the networks see: (kind, offset, width) with kind `categorical` (a softmax
block: a categorical attribute, or one field of one sequence step), `circular` (a 2-column
unit-circle block), `numeric` or `color` (sigmoid columns).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from numbers import Real
from typing import Any

import numpy as np

from services.common.attribute_kinds import (
    SequenceShape,
    circular_decode,
    circular_encode,
    circular_positions,
)

__all__ = ["Column", "CreativeSpace", "EncodingError", "segment_onehot"]

_HEX = re.compile(r"^#?([0-9a-fA-F]{6})$")
_KINDS = ("categorical", "numeric", "color", "circular", "sequence")


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
    step: float | None = None  # circular: decoded values snap to min + k * step
    shape: SequenceShape | None = None  # sequence

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "offset": self.offset,
            "width": self.width,
        }
        if self.kind == "categorical":
            out["values"] = list(self.values)
        elif self.kind in ("numeric", "circular"):
            out["min"], out["max"] = self.min, self.max
            if self.kind == "circular":
                out["step"] = self.step
        elif self.kind == "sequence" and self.shape is not None:
            out["length"] = self.shape.length
            out["fields"] = [{"name": n, "values": list(v)} for n, v in self.shape.fields]
        return out

    def blocks(self) -> list[tuple[str, int, int]]:
        if self.kind != "sequence" or self.shape is None:
            return [(self.kind, self.offset, self.width)]
        out, off = [], self.offset
        for _ in range(self.shape.length):
            for _, vocab in self.shape.fields:
                out.append(("categorical", off, len(vocab)))
                off += len(vocab)
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
        self.gumbel_dim = sum(w for _, w in self.categorical_blocks())

    @classmethod
    def from_attributes(cls, attributes: Iterable[Mapping[str, Any]]) -> CreativeSpace:
        """From a Campaign record's `attributes` (name, kind, values, min, max, step, length,
        fields)."""
        columns: list[Column] = []
        offset = 0
        for attr in attributes:
            entry = dict(attr)
            entry["offset"] = offset
            entry["width"] = _width(entry)
            columns.append(_column(entry))
            offset += columns[-1].width
        if not columns:
            raise EncodingError("the campaign declares no attributes; nothing to generate")
        return cls._checked(columns)

    @classmethod
    def from_json(cls, encoding: Iterable[Mapping[str, Any]]) -> CreativeSpace:
        """From `metadata.json`'s `encoding` list; an entry that breaks the contract (width,
        values, finite min < max) is an `EncodingError` naming it."""
        return cls._checked([_column(c) for c in encoding])

    @classmethod
    def _checked(cls, columns: list[Column]) -> CreativeSpace:
        names = [c.name for c in columns]
        if len(set(names)) != len(names) or not all(names):
            raise EncodingError(f"attribute names must be unique and non-empty: {names}")
        return cls(columns)

    def to_json(self) -> list[dict[str, Any]]:
        return [c.to_json() for c in self.columns]

    def blocks(self) -> list[tuple[str, int, int]]:
        """(kind, offset, width) per network block, in encoding order (module docstring)."""
        return [b for c in self.columns for b in c.blocks()]

    def categorical_blocks(self) -> list[tuple[int, int]]:
        """(offset, width) of each categorical block, in encoding order."""
        return [(o, w) for k, o, w in self.blocks() if k == "categorical"]

    def encode(self, attributes: Mapping[str, Any]) -> np.ndarray:
        """One creative's attributes → float32 vector. Numeric values are clipped to range."""
        out = np.zeros(self.creative_dim, dtype=np.float32)
        for col in self.columns:
            if col.name not in attributes:
                raise EncodingError(f"creative has no value for attribute {col.name!r}")
            _encode_value(col, attributes[col.name], out)
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
        """Rows → attribute maps (values as in Creative records); numeric and circular values
        rounded to `digits` decimals when given. Rows keep their dtype (float32 from ONNX)."""
        rows = np.asarray(matrix)
        out: list[dict[str, str | float]] = [{} for _ in range(rows.shape[0])]
        for col in self.columns:
            part = rows[:, col.offset : col.offset + col.width]
            if col.kind == "categorical":
                for row, i in zip(out, part.argmax(axis=1), strict=True):
                    row[col.name] = col.values[int(i)]
            elif col.kind in ("numeric", "circular"):
                lo, hi = float(col.min), float(col.max)  # type: ignore[arg-type]
                if col.kind == "numeric":
                    vals = lo + np.clip(part[:, 0], 0.0, 1.0) * (hi - lo)
                else:
                    vals = [circular_decode(c, s, lo, hi, col.step) for c, s in part.tolist()]
                for row, x in zip(out, vals, strict=True):
                    row[col.name] = float(x) if digits is None else round(float(x), digits)
            elif col.kind == "sequence":
                for row, r in zip(out, part, strict=True):
                    row[col.name] = _decode_steps(col.shape, r)  # type: ignore[arg-type]
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
                if col.kind == "numeric":
                    if isinstance(value, Real) and not isinstance(value, bool):
                        lo, hi = col.min, col.max
                        if math.isfinite(float(value)):
                            x[r, col.offset] = np.clip((float(value) - lo) / (hi - lo), 0, 1)  # type: ignore[operator]
                    continue
                try:
                    _encode_value(col, value, x[r])
                except EncodingError:
                    x[r, col.offset : col.offset + col.width] = 0.0
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


def _encode_value(col: Column, value: Any, out: np.ndarray) -> None:
    """Write one attribute's columns into `out` (a row); EncodingError when it does not fit."""
    if col.kind == "categorical":
        if str(value) not in col.values or value is None:
            raise EncodingError(f"{col.name}={value!r} is not one of {list(col.values)}")
        out[col.offset + col.values.index(str(value))] = 1.0
    elif col.kind in ("numeric", "circular"):
        try:
            x = float(value)
        except (TypeError, ValueError):
            raise EncodingError(f"{col.name}={value!r} is not a number") from None
        if not np.isfinite(x) or isinstance(value, bool):
            raise EncodingError(f"{col.name}={value!r} is not a finite number")
        lo, hi = float(col.min), float(col.max)  # type: ignore[arg-type]
        if col.kind == "numeric":
            out[col.offset] = 0.0 if hi == lo else np.clip((x - lo) / (hi - lo), 0.0, 1.0)
        else:
            out[col.offset : col.offset + 2] = circular_encode(x, lo, hi)
    elif col.kind == "sequence":
        assert col.shape is not None
        try:
            steps = col.shape.parse(value)
        except ValueError as exc:
            raise EncodingError(f"{col.name}: {exc}") from None
        off = col.offset
        for step in steps:
            for (_, vocab), tok in zip(col.shape.fields, step, strict=True):
                out[off + vocab.index(tok)] = 1.0
                off += len(vocab)
    else:
        m = _HEX.match(str(value))
        if not m:
            raise EncodingError(f"{col.name}={value!r} is not a '#rrggbb' color")
        rgb = bytes.fromhex(m.group(1))
        out[col.offset : col.offset + 3] = np.frombuffer(rgb, np.uint8) / 255.0


def _decode_steps(shape: SequenceShape, row: np.ndarray) -> str:
    steps, off = [], 0
    for _ in range(shape.length):
        step = []
        for _, vocab in shape.fields:
            step.append(vocab[int(np.argmax(row[off : off + len(vocab)]))])
            off += len(vocab)
        steps.append(step)
    return SequenceShape.format(steps)


def _width(raw: Mapping[str, Any]) -> int:
    """The width an attribute declaration takes (0 for an unknown kind: `_column` names it)."""
    kind = raw.get("kind")
    try:
        if kind == "categorical":
            return len(raw.get("values") or ())
        if kind == "sequence":
            return SequenceShape.from_record(raw).width
    except (KeyError, TypeError, ValueError) as exc:
        raise EncodingError(f"attribute {raw.get('name')!r}: {exc}") from exc
    return {"numeric": 1, "color": 3, "circular": 2}.get(str(kind), 0)


def _column(raw: Mapping[str, Any]) -> Column:
    """One `encoding` entry (or attribute declaration with its offset), checked."""
    try:
        name, kind = str(raw["name"]), str(raw["kind"])
        offset, width = int(raw["offset"]), int(raw["width"])
        if kind == "categorical":
            values = tuple(str(v) for v in raw["values"])
            if width != len(values) or width < 1 or len(set(values)) != width:
                raise ValueError(f"needs {width} distinct values, got {list(values)}")
            return Column(name, kind, offset, width, values=values)
        if kind in ("numeric", "circular"):
            lo, hi = float(raw["min"]), float(raw["max"])
            if width != (1 if kind == "numeric" else 2):
                raise ValueError(f"{kind} has width {1 if kind == 'numeric' else 2}")
            if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
                raise ValueError(f"needs finite min < max, got min={lo} max={hi}")
            step = raw.get("step")
            if kind == "circular" and step is not None:
                circular_positions(lo, hi, float(step))
            return Column(
                name,
                kind,
                offset,
                width,
                min=lo,
                max=hi,
                step=float(step) if kind == "circular" and step is not None else None,
            )
        if kind == "color":
            if width != 3:
                raise ValueError("color needs width 3")
            return Column(name, kind, offset, width)
        if kind == "sequence":
            shape = SequenceShape.from_record(raw)
            if width != shape.width:
                raise ValueError(f"width {width} != {shape.width} for the declared steps")
            return Column(name, kind, offset, width, shape=shape)
        raise ValueError(f"unknown kind {kind!r}; use one of {_KINDS}")
    except (KeyError, TypeError, ValueError) as exc:
        raise EncodingError(f"attribute {dict(raw).get('name')!r}: {exc}") from exc
