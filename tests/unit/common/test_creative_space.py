import json

import numpy as np
import pytest

from services.common.creative_space import CreativeSpace, EncodingError, segment_onehot
from services.trainer.synthetic import synthetic_campaign, synthetic_catalog


@pytest.fixture
def space() -> CreativeSpace:
    return CreativeSpace.from_attributes(synthetic_campaign()["attributes"])


def test_layout_follows_declaration_order(space: CreativeSpace) -> None:
    enc = space.to_json()
    assert [(c["name"], c["kind"], c["offset"], c["width"]) for c in enc] == [
        ("layout", "categorical", 0, 3),
        ("headline", "categorical", 3, 4),
        ("cta", "categorical", 7, 3),
        ("font_scale", "numeric", 10, 1),
        ("background", "color", 11, 3),
    ]
    assert space.creative_dim == 14
    assert space.gumbel_dim == 10
    assert enc[3]["min"] == 0.8 and enc[3]["max"] == 1.6


def test_catalog_creatives_round_trip(space: CreativeSpace) -> None:
    for creative in synthetic_catalog(n=20):
        attrs = creative["attributes"]
        back = space.decode(space.encode(attrs))
        assert back["layout"] == attrs["layout"] and back["headline"] == attrs["headline"]
        assert back["background"] == attrs["background"]
        assert back["font_scale"] == pytest.approx(attrs["font_scale"], abs=1e-6)


def test_encoding_values_follow_the_contract(space: CreativeSpace) -> None:
    v = space.encode(
        {
            "layout": "grid",
            "headline": "Last chance",
            "cta": "Shop",
            "font_scale": 1.2,
            "background": "#ff8000",
        }
    )
    assert v[:3].tolist() == [0, 0, 1]
    assert v[10] == pytest.approx(0.5)
    assert v[11:14] == pytest.approx([1.0, 128 / 255, 0.0])


@pytest.mark.parametrize(
    "change, message",
    [
        ({"layout": "circle"}, "is not one of"),
        ({"background": "red"}, "#rrggbb"),
        ({"font_scale": "big"}, "not a number"),
    ],
)
def test_bad_values_are_clear_errors(space: CreativeSpace, change: dict, message: str) -> None:
    attrs = synthetic_catalog(n=1)[0]["attributes"] | change
    with pytest.raises(EncodingError, match=message):
        space.encode(attrs)


def test_missing_attribute_is_an_error(space: CreativeSpace) -> None:
    attrs = dict(synthetic_catalog(n=1)[0]["attributes"])
    del attrs["cta"]
    with pytest.raises(EncodingError, match="cta"):
        space.encode(attrs)


def test_numeric_out_of_range_is_clipped(space: CreativeSpace) -> None:
    attrs = synthetic_catalog(n=1)[0]["attributes"] | {"font_scale": 9.0}
    assert space.decode(space.encode(attrs))["font_scale"] == pytest.approx(1.6)


@pytest.mark.parametrize(
    "attrs",
    [
        [],
        [{"name": "x", "kind": "categorical", "values": []}],
        [{"name": "x", "kind": "numeric", "min": 2.0, "max": 1.0}],
        [{"name": "x", "kind": "shape"}],
        [{"name": "x", "kind": "color"}, {"name": "x", "kind": "color"}],
    ],
)
def test_unusable_declarations_are_refused(attrs: list) -> None:
    with pytest.raises(EncodingError):
        CreativeSpace.from_attributes(attrs)


def test_json_form_rebuilds_the_same_space(space: CreativeSpace) -> None:
    again = CreativeSpace.from_json(json.loads(json.dumps(space.to_json())))
    v = space.encode(synthetic_catalog(n=1)[0]["attributes"])
    assert again.decode(v) == space.decode(v)
    assert again.creative_dim == space.creative_dim


def test_unknown_segment_is_all_zeros() -> None:
    hot = segment_onehot(["a", "b"], ["b", "zzz", "a"])
    assert hot.tolist() == [[0, 1], [0, 0], [1, 0]]
    assert hot.dtype == np.float32
