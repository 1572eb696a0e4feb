"""Attribute effects: CTR with a 95% interval and lift over the segment average."""

from __future__ import annotations

import pytest

from services.common.effects import wilson_interval
from services.features.effects import attribute_effects


def test_a_value_never_shown_has_the_whole_interval_and_the_shared_formula_otherwise() -> None:
    rows = [("DE", "a", 0, 0), ("DE", "b", 100, 10)]
    attrs = {"a": {"cta": "Shop now"}, "b": {"cta": "Learn more"}}
    effects = {e.value: e for e in attribute_effects(rows, attrs)}
    assert (effects["Shop now"].ctr_low, effects["Shop now"].ctr_high) == (0.0, 1.0)
    low, high = wilson_interval(10, 100)
    assert (effects["Learn more"].ctr_low, effects["Learn more"].ctr_high) == (low, high)


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
