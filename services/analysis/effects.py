"""Which creatives and which attribute values do better than their audience would predict.

For a group g of rows (one creative, or all creatives with `headline=Save 20%`):
- rate: mean reward with a 95% interval (Wilson for 0/1 rewards, normal otherwise);
- expected: the average reward of the segments the group was shown in, weighted by how often
  it was shown in each: sum_i segment_mean[x_i] / n_g. This is the "segment average" baseline,
  so a creative served mostly to a high-CTR audience does not look good for that alone;
- lift = rate / expected - 1, with the rate's interval divided by `expected` (the segment
  averages pool every creative's rows, so their own noise is small next to the group's).

Wilson interval and lift are `services.common.effects` (one definition, docs/analysis.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from services.analysis.dataset import LoggedData
from services.common.effects import lift_over, wilson_interval, z_value

__all__ = ["GroupEffect", "attribute_effects", "creative_effects", "group_effects"]

_NUMERIC_BINS = 4


@dataclass(frozen=True)
class GroupEffect:
    group: str
    n: int
    reward_sum: float
    rate: float
    low: float
    high: float
    expected: float
    lift: float
    lift_low: float
    lift_high: float


def group_effects(
    data: LoggedData,
    group: np.ndarray,
    names: list[str] | tuple[str, ...],
    confidence: float = 0.95,
) -> list[GroupEffect]:
    """Effects of row groups (`group[i]` in 0..len(names)-1, -1 = no group), biggest first."""
    n_g = len(names)
    keep = group >= 0
    g = group[keep]
    x = data.context[keep]
    r = data.reward[keep]
    seg_n = np.bincount(data.context, minlength=data.n_contexts)
    seg_sum = np.bincount(data.context, weights=data.reward, minlength=data.n_contexts)
    with np.errstate(invalid="ignore", divide="ignore"):
        seg_mean = seg_sum / seg_n
    counts = np.bincount(g, minlength=n_g)
    sums = np.bincount(g, weights=r, minlength=n_g)
    exp_sum = np.bincount(g, weights=seg_mean[x], minlength=n_g)
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = sums / counts
        expected = exp_sum / counts
    if data.is_binary():
        low, high = wilson_interval(sums, counts, confidence)
    else:
        sq = np.bincount(g, weights=r * r, minlength=n_g)
        with np.errstate(invalid="ignore", divide="ignore"):
            var = (sq - counts * rates**2) / np.maximum(counts - 1, 1)
            se = np.sqrt(np.maximum(var, 0) / counts)
        z = z_value(confidence)
        low, high = rates - z * se, rates + z * se
    lift, lift_low, lift_high = lift_over(rates, low, high, expected)
    out = [
        GroupEffect(
            str(names[i]),
            int(counts[i]),
            float(sums[i]),
            float(rates[i]),
            float(low[i]),
            float(high[i]),
            float(expected[i]),
            float(lift[i]),
            float(lift_low[i]),
            float(lift_high[i]),
        )
        for i in range(n_g)
        if counts[i] > 0
    ]
    return sorted(out, key=lambda e: (-e.n, e.group))


def creative_effects(data: LoggedData, confidence: float = 0.95) -> list[GroupEffect]:
    """One effect per logged creative."""
    return group_effects(data, data.action, data.actions, confidence)


def attribute_effects(
    data: LoggedData,
    attributes: Mapping[str, Mapping[str, str | float]],
    confidence: float = 0.95,
) -> dict[str, list[GroupEffect]]:
    """Per attribute: one effect per value (numeric attributes binned by quartile).

    attributes: {creative_id: {attribute: value}}; creatives without an entry are left out.
    """
    names = sorted({k for attrs in attributes.values() for k in attrs})
    out: dict[str, list[GroupEffect]] = {}
    for name in names:
        per_action = [attributes.get(a, {}).get(name) for a in data.actions]
        labels = _labels(per_action)
        vocab = sorted({lab for lab in labels if lab is not None})
        index = {v: i for i, v in enumerate(vocab)}
        action_group = np.array(
            [index[lab] if lab is not None else -1 for lab in labels], dtype=np.int64
        )
        if not vocab or data.n_actions == 0:
            continue
        out[name] = group_effects(data, action_group[data.action], vocab, confidence)
    return out


def _labels(values: list[str | float | None]) -> list[str | None]:
    numeric = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if len(set(numeric)) <= _NUMERIC_BINS:
        return [None if v is None else _fmt(v) for v in values]
    edges = np.quantile(np.array(numeric, dtype=np.float64), np.linspace(0, 1, _NUMERIC_BINS + 1))
    edges = np.unique(edges)
    labels: list[str | None] = []
    for v in values:
        if v is None or not isinstance(v, int | float):
            labels.append(None if v is None else str(v))
            continue
        i = min(int(np.searchsorted(edges, v, side="right")) - 1, len(edges) - 2)
        i = max(i, 0)
        close = "]" if i == len(edges) - 2 else ")"
        labels.append(f"[{_fmt(edges[i])}, {_fmt(edges[i + 1])}{close}")
    return labels


def _fmt(v: str | float) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
