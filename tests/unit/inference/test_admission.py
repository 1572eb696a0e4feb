"""The admission gate: only valid, allowed, readable and new creatives get through."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from services.inference.admission import REASONS, admit, contrast_ratio, distance, distance_matrix
from tests.unit.inference.onnx_fixtures import campaign

GOOD: dict[str, Any] = {
    "headline": "Spring sale",
    "cta": "Buy now",
    "font_scale": 1.2,
    "background": "#112233",
    "text_color": "#ffffff",
}


def test_contrast_ratio_wcag_reference_values() -> None:
    assert contrast_ratio("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast_ratio("#ffffff", "#000000") == pytest.approx(21.0)
    assert contrast_ratio("#336699", "#336699") == pytest.approx(1.0)
    # #777777 on white is the classic "just fails AA" grey (4.48:1).
    assert contrast_ratio("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)
    assert contrast_ratio("#767676", "#FFFFFF") == pytest.approx(4.54, abs=0.01)
    with pytest.raises(ValueError, match="#rrggbb"):
        contrast_ratio("red", "#ffffff")


def test_valid_creative_is_admitted() -> None:
    result = admit(GOOD, campaign(), [])
    assert result.admitted and result.reason is None
    # A Creative record is accepted as well as a bare attribute map.
    assert admit({"creative_id": "x", "attributes": GOOD}, campaign(), []).admitted


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"headline": None}, "missing_attribute"),
        ({"sparkles": "yes"}, "unknown_attribute"),
        ({"headline": "Free money"}, "invalid_value"),
        ({"cta": 3.0}, "invalid_value"),
        ({"font_scale": 2.5}, "invalid_value"),
        ({"font_scale": float("nan")}, "invalid_value"),
        ({"font_scale": True}, "invalid_value"),
        ({"font_scale": "1.2"}, "invalid_value"),
        ({"background": "red"}, "invalid_value"),
        ({"background": "#12345g"}, "invalid_value"),
        ({"text_color": "#fff"}, "invalid_value"),
        ({"text_color": "#777777", "background": "#ffffff"}, "low_contrast"),
        ({"text_color": "#223344"}, "low_contrast"),
    ],
)
def test_rejections_carry_stable_reasons(change: dict[str, Any], reason: str) -> None:
    creative = {**GOOD, **change}
    creative = {k: v for k, v in creative.items() if v is not None}
    result = admit(creative, campaign(), [])
    assert not result.admitted
    assert result.reason == reason
    assert result.reason in REASONS
    assert result.detail


def test_forbidden_combination() -> None:
    rules = campaign(forbidden=[{"headline": "Last chance", "cta": "Learn more"}])
    bad = {**GOOD, "headline": "Last chance", "cta": "Learn more"}
    assert admit(bad, rules, []).reason == "forbidden_combination"
    # Either value alone is fine.
    assert admit({**GOOD, "headline": "Last chance"}, rules, []).admitted
    assert admit({**GOOD, "cta": "Learn more"}, rules, []).admitted
    # Colors in rules compare case-insensitively; numerics by value.
    color_rule = campaign(forbidden=[{"background": "#AABBCC", "font_scale": "1.2"}])
    light = {**GOOD, "background": "#aabbcc", "text_color": "#000000"}
    assert admit(light, color_rule, []).reason == "forbidden_combination"


def test_min_contrast_is_the_campaigns() -> None:
    grey = {**GOOD, "text_color": "#777777", "background": "#ffffff"}
    assert admit(grey, campaign(min_contrast=4.5), []).reason == "low_contrast"
    assert admit(grey, campaign(min_contrast=3.0), []).admitted


def test_without_text_color_the_renderers_choice_is_checked() -> None:
    # No text color attribute: the renderer draws black or white, always >= 4.58:1.
    space = [a for a in campaign()["attributes"] if a["name"] != "text_color"]
    rules = campaign(attributes=space)
    creative = {k: v for k, v in GOOD.items() if k != "text_color"}
    assert admit({**creative, "background": "#808080"}, rules, []).admitted
    strict = campaign(attributes=space, min_contrast=7.0)
    assert admit({**creative, "background": "#808080"}, strict, []).reason == "low_contrast"


def test_near_duplicates_of_live_creatives_are_refused() -> None:
    rules = campaign()
    live = [{"creative_id": "c1", "attributes": dict(GOOD)}]
    tweak = {**GOOD, "font_scale": 1.21, "background": "#112234"}
    assert admit(tweak, rules, live).reason == "near_duplicate"
    assert admit(GOOD, rules, live).reason == "near_duplicate"
    other_headline = {**GOOD, "headline": "New in"}
    assert admit(other_headline, rules, live).admitted
    assert admit(tweak, rules, live, min_distance=0.001).admitted


def test_distance_is_normalized() -> None:
    space = {a["name"]: a for a in campaign()["attributes"]}
    assert distance(GOOD, GOOD, space) == 0.0
    far = {
        "headline": "New in",
        "cta": "Shop",
        "font_scale": 0.8,
        "background": "#eeddcc",
        "text_color": "#000000",
    }
    assert 0.5 < distance(GOOD, far, space) <= 1.0
    assert distance(GOOD, {}, space) == 1.0
    assert distance(GOOD, {**GOOD, "font_scale": 1.6}, space) == pytest.approx(0.5 / 5)


def test_distance_matrix_agrees_with_distance() -> None:
    space = {a["name"]: a for a in campaign()["attributes"]}
    space["weight"] = {"name": "weight", "kind": "numeric", "values": [], "min": None, "max": None}
    rng = np.random.default_rng(0)

    def creative() -> dict[str, Any]:
        c: dict[str, Any] = {
            "headline": str(rng.choice(["Spring sale", "New in", "nope"])),
            "cta": str(rng.choice(["Buy now", "Shop"])),
            "font_scale": float(rng.choice([0.8, 1.0, 1.6, 9.0])),
            "background": str(rng.choice(["#112233", "#ffeedd", "red"])),
            "text_color": f"#{rng.integers(0, 2**24):06x}",
            "weight": float(rng.choice([1.0, 2.0])),
        }
        if rng.random() < 0.2:
            del c["cta"]
        return c

    a = [creative() for _ in range(15)]
    b = [creative() for _ in range(9)]
    m = distance_matrix(a, b, space)
    expected = np.array([[distance(x, y, space) for y in b] for x in a])
    assert m.shape == (15, 9)
    assert m == pytest.approx(expected, abs=1e-12)
    assert distance_matrix([], b, space).shape == (0, 9)
