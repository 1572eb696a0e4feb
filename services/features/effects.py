"""Attribute effects: what each creative attribute value is worth, per segment.

For every segment and every (attribute, value) — e.g. ``cta = "Shop now"`` — pool the
impressions and clicks of the creatives that carry that value; report the click-through rate
with a 95% Wilson score interval and its lift over the segment's average CTR (all creatives).
The lift interval divides the CTR interval by the segment average (treated as known, which
is close when the segment has far more impressions than one value) — the one definition of
lift (`services.common.effects`, docs/analysis.md) that `admuse report` uses too. Numeric
attribute values are not grouped (every creative would be its own group); categorical and
color values are.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from services.common.effects import lift_over, wilson_interval

__all__ = ["SegmentEffect", "attribute_effects"]


@dataclass(frozen=True)
class SegmentEffect:
    segment: str
    attribute: str
    value: str
    creatives: int
    impressions: int
    clicks: int
    ctr: float
    ctr_low: float
    ctr_high: float
    segment_ctr: float
    lift: float | None  # ctr / segment_ctr - 1; None when the segment has no clicks
    lift_low: float | None
    lift_high: float | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def attribute_effects(
    rows: Iterable[tuple[str, str, int, int]],
    attributes: Mapping[str, Mapping[str, Any]],
) -> list[SegmentEffect]:
    """Effects from cumulative stats rows ``(segment, creative_id, impressions, clicks)``.

    `attributes` maps creative_id to its attribute values; creatives it does not know count
    in the segment average but in no attribute group.
    """
    seg_totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    groups: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for segment, creative_id, impressions, clicks in rows:
        seg_totals[segment][0] += impressions
        seg_totals[segment][1] += clicks
        for name, value in (attributes.get(creative_id) or {}).items():
            if isinstance(value, bool) or not isinstance(value, str):
                continue
            g = groups[(segment, name, value)]
            g[0] += 1
            g[1] += impressions
            g[2] += clicks
    out = []
    for (segment, name, value), (n_creatives, impressions, clicks) in sorted(groups.items()):
        seg_imp, seg_clicks = seg_totals[segment]
        seg_ctr = seg_clicks / seg_imp if seg_imp else 0.0
        ctr = clicks / impressions if impressions else 0.0
        if impressions:
            low, high = (float(x) for x in wilson_interval(clicks, impressions))
        else:
            low, high = 0.0, 1.0  # nothing shown yet: anything is possible
        lift = lift_low = lift_high = None
        if seg_ctr > 0:
            lift, lift_low, lift_high = (float(x) for x in lift_over(ctr, low, high, seg_ctr))
        out.append(
            SegmentEffect(
                segment,
                name,
                value,
                n_creatives,
                impressions,
                clicks,
                ctr,
                low,
                high,
                seg_ctr,
                lift,
                lift_low,
                lift_high,
            )
        )
    return out
