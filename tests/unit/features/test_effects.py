"""Attribute effects: CTR with a 95% interval and lift over the segment average."""

from __future__ import annotations

import pytest

from services.features.effects import attribute_effects, wilson_interval


def test_wilson_interval_matches_known_values() -> None:
    low, high = wilson_interval(10, 100)
    assert low == pytest.approx(0.0552, abs=1e-4) and high == pytest.approx(0.1744, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(0, 50)[0] == pytest.approx(0.0, abs=1e-12)


def test_effects_pool_creatives_by_attribute_value_per_segment() -> None:
    rows = [("DE", "a", 1000, 100), ("DE", "b", 1000, 20), ("FR", "a", 100, 1)]
    attrs = {"a": {"cta": "Shop now", "font_scale": 1.2}, "b": {"cta": "Learn more"}}
    effects = {(e.segment, e.attribute, e.value): e for e in attribute_effects(rows, attrs)}
    shop = effects[("DE", "cta", "Shop now")]
    assert shop.ctr == pytest.approx(0.1) and shop.segment_ctr == pytest.approx(0.06)
    assert shop.lift == pytest.approx(0.1 / 0.06 - 1)
    assert shop.ctr_low < shop.ctr < shop.ctr_high
    assert shop.lift_low < shop.lift < shop.lift_high
    assert effects[("DE", "cta", "Learn more")].lift < 0
    assert ("DE", "font_scale", "1.2") not in effects  # numeric values are not grouped
    assert effects[("FR", "cta", "Shop now")].lift == pytest.approx(0.0)


def test_segment_without_clicks_has_no_lift() -> None:
    [e] = attribute_effects([("DE", "a", 10, 0)], {"a": {"cta": "x"}})
    assert e.lift is None and e.ctr == 0.0
