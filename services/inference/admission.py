"""The admission gate: may a generated creative be served for a campaign? (DESIGN.md §1)

`admit` checks, in this order, and answers with the first failure as a stable reason code:

- ``missing_attribute``: an attribute of the campaign's space has no value;
- ``unknown_attribute``: a value for an attribute the campaign does not declare;
- ``invalid_value``: categorical outside its vocabulary, numeric not finite or out of range,
  color not ``#rrggbb``, circular outside ``[min, max)``, sequence not of the declared steps;
- ``forbidden_combination``: all values of one of the campaign's ``forbidden`` maps appear;
- ``low_contrast``: a text color on the background is below the campaign's ``min_contrast``;
- ``near_duplicate``: closer than ``min_distance`` to a live creative (see `distance`).

Which colors are text and which background is fixed in `services.domains.banner_colors`
(``text_color``/``background`` and a few aliases); the renderer draws with the same rules, so a
creative without a text color gets black or white text and cannot fail the contrast check
unless ``min_contrast`` exceeds 4.58.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from services.common.attribute_kinds import SequenceShape, circular_distance
from services.domains import DomainError, rules_for
from services.domains.banner_colors import contrast_ratio, is_hex_color, parse_hex

__all__ = [
    "REASONS",
    "AdmissionResult",
    "admit",
    "attributes_of",
    "contrast_ratio",
    "distance",
    "distance_matrix",
]

REASONS = (
    "missing_attribute",
    "unknown_attribute",
    "invalid_value",
    "forbidden_combination",
    "low_contrast",
    "domain_rule",
    "near_duplicate",
)


@dataclass(frozen=True)
class AdmissionResult:
    """Verdict of the gate: ``reason`` is one of `REASONS` when not admitted, else None.

    ``detail`` says which attribute or value failed, for logs (not a stable format).
    """

    admitted: bool
    reason: str | None
    detail: str | None = None


_OK = AdmissionResult(True, None)


def attributes_of(creative: Mapping[str, object]) -> Mapping[str, object]:
    """The attribute map of a Creative record, or ``creative`` itself if it is one already."""
    inner = creative.get("attributes")
    return inner if isinstance(inner, Mapping) else creative


def admit(
    creative: Mapping[str, object],
    campaign: Mapping[str, object],
    live: Sequence[Mapping[str, object]],
    *,
    min_distance: float = 0.05,
) -> AdmissionResult:
    """Judge ``creative`` (an attribute map or a Creative record) for ``campaign``.

    ``campaign`` is a decoded Campaign record (``attributes``, ``forbidden``,
    ``min_contrast``); ``live`` are the creatives now serving (attribute maps or records).
    """
    attrs = attributes_of(creative)
    space = {a["name"]: a for a in campaign.get("attributes", [])}
    for name in space:
        if name not in attrs:
            return _no("missing_attribute", name)
    for name in attrs:
        if name not in space:
            return _no("unknown_attribute", name)
    for name, spec in space.items():
        if not _valid(attrs[name], spec):
            return _no("invalid_value", f"{name}={attrs[name]!r}")
    for combo in campaign.get("forbidden", []) or []:
        if combo and all(_same(attrs.get(k), v) for k, v in combo.items()):
            return _no("forbidden_combination", ", ".join(f"{k}={v}" for k, v in combo.items()))
    try:
        rules = rules_for(campaign)
    except DomainError as exc:
        return _no("domain_rule", str(exc))
    for rule in rules:
        problem = rule.check(attrs)
        if problem is not None:
            return _no(rule.reason, f"{rule.name}: {problem}")
    for other in live:
        d = distance(attrs, attributes_of(other), space)
        if d < min_distance:
            return _no("near_duplicate", f"distance {d:.4f} < {min_distance}")
    return _OK


def distance(
    a: Mapping[str, object], b: Mapping[str, object], space: Mapping[str, Mapping[str, object]]
) -> float:
    """Normalized distance in [0, 1]: the mean over the space's attributes of a per-attribute
    distance — categorical 0/1, numeric ``|x-y| / (max-min)``, color Euclidean RGB distance /
    sqrt(3), circular the shorter way round / half the circle, sequence the share of differing
    (step, field) slots. A value missing or invalid on either side counts as 1."""
    if not space:
        return 0.0
    total = 0.0
    for name, spec in space.items():
        total += _attr_distance(a.get(name), b.get(name), spec)
    return total / len(space)


def changed_attributes(
    a: Mapping[str, object], b: Mapping[str, object], space: Mapping[str, Mapping[str, object]]
) -> int:
    """How many of the space's attributes differ between two attribute maps: per-attribute
    `distance` above 1e-5 (a value that went through the encoding and back, rounded to six
    digits, is unchanged)."""
    return sum(
        1 for name, spec in space.items() if _attr_distance(a.get(name), b.get(name), spec) > 1e-5
    )


def distance_matrix(
    a: Sequence[Mapping[str, object]],
    b: Sequence[Mapping[str, object]],
    space: Mapping[str, Mapping[str, object]],
) -> np.ndarray:
    """`distance` between every attribute map of ``a`` and of ``b`` (shape ``[len(a), len(b)]``),
    vectorized: the near-duplicate check for many candidates against many live creatives."""
    out = np.zeros((len(a), len(b)))
    if not space or not len(a) or not len(b):
        return out
    for name, spec in space.items():
        xa, oka = _column(a, name, spec)
        xb, okb = _column(b, name, spec)
        kind = spec.get("kind")
        if kind == "color":
            d = np.sqrt(((xa[:, None, :] - xb[None, :, :]) ** 2).sum(axis=2)) / math.sqrt(3)
        elif kind == "numeric" and _span(spec) is not None:
            d = np.minimum(1.0, np.abs(xa[:, None, 0] - xb[None, :, 0]) / _span(spec))
        elif kind == "circular":
            span = float(_span(spec) or 1.0)
            gap = np.abs(xa[:, None, 0] - xb[None, :, 0]) % span
            d = np.minimum(gap, span - gap) / (span / 2)
        elif kind == "sequence":
            d = (xa[:, None, :] != xb[None, :, :]).mean(axis=2)
        else:  # categorical (by index), or a numeric without a range (equal or not)
            d = (xa[:, None, 0] != xb[None, :, 0]).astype(np.float64)
        out += np.where(oka[:, None] & okb[None, :], d, 1.0)
    return out / len(space)


def _span(spec: Mapping[str, object]) -> float | None:
    lo, hi = spec.get("min"), spec.get("max")
    if lo is None or hi is None or float(hi) <= float(lo):  # type: ignore[arg-type]
        return None
    return float(hi) - float(lo)  # type: ignore[arg-type]


def _column(
    rows: Sequence[Mapping[str, object]], name: str, spec: Mapping[str, object]
) -> tuple[np.ndarray, np.ndarray]:
    """One attribute as numbers (category index, numeric value, or RGB) and a validity mask."""
    kind = spec.get("kind")
    shape = SequenceShape.from_record(spec) if kind == "sequence" else None
    width = 3 if kind == "color" else (shape.length * len(shape.fields) if shape else 1)
    x = np.zeros((len(rows), width))
    ok = np.zeros(len(rows), dtype=bool)
    values = list(spec.get("values") or [])  # type: ignore[call-overload]
    for r, row in enumerate(rows):
        value = row.get(name)
        if value is None or not _valid(value, spec):
            continue
        ok[r] = True
        if kind == "categorical":
            x[r, 0] = values.index(value)
        elif kind in ("numeric", "circular"):
            x[r, 0] = float(value)  # type: ignore[arg-type]
        elif shape is not None:
            x[r] = [
                vocab.index(tok)
                for step in shape.parse(value)
                for (_, vocab), tok in zip(shape.fields, step, strict=True)
            ]
        else:
            x[r] = parse_hex(str(value))
    return x, ok


def _no(reason: str, detail: str) -> AdmissionResult:
    return AdmissionResult(False, reason, detail)


def _valid(value: object, spec: Mapping[str, object]) -> bool:
    kind = spec.get("kind")
    if kind == "categorical":
        return isinstance(value, str) and value in (spec.get("values") or [])
    if kind == "numeric":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        x = float(value)
        lo, hi = spec.get("min"), spec.get("max")
        return (
            math.isfinite(x)
            and (lo is None or x >= float(lo))  # type: ignore[arg-type]
            and (hi is None or x <= float(hi))  # type: ignore[arg-type]
        )
    if kind == "color":
        return is_hex_color(value)
    if kind == "circular":
        span = _span(spec)
        if span is None or isinstance(value, bool) or not isinstance(value, int | float):
            return False
        return math.isfinite(float(value)) and 0 <= float(value) - float(spec["min"]) < span  # type: ignore[arg-type]
    if kind == "sequence":
        try:
            return SequenceShape.from_record(spec).is_valid(value)
        except (KeyError, TypeError, ValueError):
            return False  # an unusable declaration admits nothing
    return False


def _same(value: object, wanted: str) -> bool:
    if value is None:
        return False
    if isinstance(value, str):
        return value.lower() == wanted.lower() if is_hex_color(value) else value == wanted
    try:
        return float(value) == float(wanted)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def _attr_distance(x: object, y: object, spec: Mapping[str, object]) -> float:
    if x is None or y is None or not _valid(x, spec) or not _valid(y, spec):
        return 1.0
    kind = spec.get("kind")
    if kind == "categorical":
        return 0.0 if x == y else 1.0
    if kind == "numeric":
        span = _span(spec)
        if span is None:
            return 0.0 if float(x) == float(y) else 1.0  # type: ignore[arg-type]
        return min(1.0, abs(float(x) - float(y)) / span)  # type: ignore[arg-type]
    if kind == "circular":
        lo, hi = float(spec["min"]), float(spec["max"])  # type: ignore[arg-type]
        return circular_distance(float(x), float(y), lo, hi)  # type: ignore[arg-type]
    if kind == "sequence":
        shape = SequenceShape.from_record(spec)
        return shape.distance(shape.parse(x), shape.parse(y))
    ca, cb = parse_hex(str(x)), parse_hex(str(y))
    return math.sqrt(sum((p - q) ** 2 for p, q in zip(ca, cb, strict=True))) / math.sqrt(3)
