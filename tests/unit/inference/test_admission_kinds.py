"""The admission gate on circular and sequence attributes: validity and distance."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.inference.admission import admit, distance, distance_matrix

CAMPAIGN = {
    "attributes": [
        {"name": "key", "kind": "circular", "min": 0.0, "max": 12.0, "step": 1.0},
        {
            "name": "melody",
            "kind": "sequence",
            "length": 4,
            "fields": [
                {"name": "degree", "values": ["1", "3", "5", "8"]},
                {"name": "duration", "values": ["1/8", "1/4"]},
            ],
        },
    ],
    "forbidden": [],
    "min_contrast": 1.0,
}
SPACE = {a["name"]: a for a in CAMPAIGN["attributes"]}
GOOD = {"key": 0.0, "melody": "1:1/4 3:1/4 5:1/8 8:1/4"}

melodies = st.lists(
    st.tuples(st.sampled_from(["1", "3", "5", "8"]), st.sampled_from(["1/8", "1/4"])),
    min_size=4,
    max_size=4,
).map(lambda s: " ".join(f"{d}:{t}" for d, t in s))
creatives = st.fixed_dictionaries({"key": st.integers(0, 11).map(float), "melody": melodies})


@pytest.mark.parametrize(
    "change",
    [{"key": 12.0}, {"key": -0.5}, {"key": "C"}, {"melody": "1:1/4 3:1/4 5:1/8"}, {"melody": 4}],
)
def test_values_off_the_declaration_are_invalid(change: dict) -> None:
    result = admit(GOOD | change, CAMPAIGN, [])
    assert (result.admitted, result.reason) == (False, "invalid_value")


def test_distance_goes_the_short_way_round_and_counts_steps() -> None:
    assert distance(GOOD, GOOD | {"key": 11.0}, SPACE) == pytest.approx((1 / 6) / 2)
    one_step = GOOD | {"melody": "1:1/4 3:1/4 5:1/8 1:1/4"}
    assert distance(GOOD, one_step, SPACE) == pytest.approx((1 / 8) / 2)
    assert not admit(one_step, CAMPAIGN, [GOOD], min_distance=0.1).admitted
    assert admit(one_step, CAMPAIGN, [GOOD], min_distance=0.05).admitted


@settings(max_examples=40)
@given(st.lists(creatives, min_size=1, max_size=4), st.lists(creatives, min_size=1, max_size=4))
def test_distance_matrix_agrees_with_distance(a: list, b: list) -> None:
    got = distance_matrix(a, b, SPACE)
    want = np.array([[distance(x, y, SPACE) for y in b] for x in a])
    assert np.allclose(got, want)
    assert admit(a[0], CAMPAIGN, []).admitted
