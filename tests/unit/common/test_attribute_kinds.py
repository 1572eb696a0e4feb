"""Circular numbers and step sequences: encoding round trips, distances, validity."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.attribute_kinds import (
    SequenceShape,
    circular_decode,
    circular_distance,
    circular_encode,
)
from services.common.creative_space import CreativeSpace, EncodingError

MELODY = SequenceShape(
    4, (("degree", ("1", "2", "3", "5", "6", "8")), ("duration", ("1/8", "1/4", "1/2")))
)
ATTRS = [
    {"name": "hue", "kind": "circular", "min": 0.0, "max": 360.0},
    {"name": "key", "kind": "circular", "min": 0.0, "max": 12.0, "step": 1.0},
    {
        "name": "melody",
        "kind": "sequence",
        "length": 4,
        "fields": [{"name": n, "values": list(v)} for n, v in MELODY.fields],
    },
    {"name": "tempo", "kind": "numeric", "min": 60.0, "max": 180.0},
]

ranges = st.tuples(
    st.floats(-1e3, 1e3, allow_nan=False), st.floats(1e-2, 1e3, allow_nan=False)
).map(lambda t: (t[0], t[0] + t[1]))
steps = st.lists(
    st.tuples(st.sampled_from(MELODY.fields[0][1]), st.sampled_from(MELODY.fields[1][1])),
    min_size=4,
    max_size=4,
)


@given(ranges, st.floats(0, 1, exclude_max=True))
def test_circular_round_trip_lands_on_the_same_point(rng: tuple, share: float) -> None:
    lo, hi = rng
    x = lo + share * (hi - lo)
    c, s = circular_encode(x, lo, hi)
    assert 0 <= c <= 1 and 0 <= s <= 1
    back = circular_decode(c, s, lo, hi)
    assert lo <= back < hi
    assert circular_distance(back, x, lo, hi) < 1e-6


@given(st.floats(0, 1, allow_nan=False), st.floats(0, 1, allow_nan=False))
def test_any_point_decodes_into_the_range(c: float, s: float) -> None:
    assert 0 <= circular_decode(c, s, 0, 360) < 360
    assert circular_decode(c, s, 0, 12, step=1.0) in range(12)


def test_the_ends_of_the_circle_meet() -> None:
    assert np.allclose(circular_encode(0, 0, 360), circular_encode(360, 0, 360))
    assert circular_distance(359, 1, 0, 360) == pytest.approx(2 / 180)
    assert circular_distance(0, 180, 0, 360) == pytest.approx(1.0)
    # key 11 (F on the circle of fifths) is one step from key 0 (C), not eleven
    assert circular_distance(11, 0, 0, 12) == pytest.approx(1 / 6)
    assert circular_decode(*circular_encode(11.6, 0, 12), 0, 12, step=1.0) == 0.0


@given(ranges, st.floats(0, 1), st.floats(0, 1), st.floats(0, 1))
def test_circular_distance_is_a_bounded_symmetric_metric(rng, a, b, c) -> None:
    lo, hi = rng
    x, y, z = (lo + t * (hi - lo) for t in (a, b, c))
    d = circular_distance(x, y, lo, hi)
    assert 0 <= d <= 1 + 1e-9
    assert d == pytest.approx(circular_distance(y, x, lo, hi), abs=1e-9)
    assert circular_distance(x, z, lo, hi) <= d + circular_distance(y, z, lo, hi) + 1e-9
    assert circular_distance(x, x + (hi - lo), lo, hi) == pytest.approx(0, abs=1e-6)


@given(steps)
def test_sequence_text_round_trips(value: list) -> None:
    parsed = MELODY.parse(value)
    text = MELODY.format(parsed)
    assert MELODY.parse(text) == parsed
    assert MELODY.canonical([":".join(s) for s in value]) == text
    assert MELODY.distance(parsed, parsed) == 0


@given(st.one_of(st.text(max_size=40), st.lists(st.text(max_size=6), max_size=6), st.none()))
def test_garbage_is_a_value_error_never_a_crash(value: object) -> None:
    if MELODY.is_valid(value):
        assert MELODY.parse(MELODY.canonical(value)) == MELODY.parse(value)
    else:
        with pytest.raises(ValueError):
            MELODY.parse(value)


@pytest.mark.parametrize(
    "value, message",
    [
        ("1:1/8 2:1/8 3:1/8", "has 3 steps"),
        ("1:1/8 2:1/8 3:1/8 4:1/8", "step 3 degree='4'"),
        ("1:1/8 2:1/8 3:1/8 5", "needs 2 field"),
        (42, "not a sequence"),
    ],
)
def test_bad_sequences_name_the_step(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MELODY.parse(value)


def test_shapes_refuse_separators_in_tokens() -> None:
    with pytest.raises(ValueError, match="not tokens"):
        SequenceShape(2, (("beat", ("hero wins", "villain")),))


@settings(max_examples=50)
@given(st.floats(0, 360, exclude_max=True), st.integers(0, 11), steps, st.floats(60, 180))
def test_creative_space_round_trips_structured_kinds(hue, key, melody, tempo) -> None:
    space = CreativeSpace.from_attributes(ATTRS)
    assert [b[0] for b in space.blocks()] == [
        "circular",
        "circular",
        *["categorical"] * 8,
        "numeric",
    ]
    assert space.creative_dim == 2 + 2 + 4 * 9 + 1 and space.gumbel_dim == 36
    attrs = {"hue": hue, "key": float(key), "melody": [list(s) for s in melody], "tempo": tempo}
    back = space.decode(space.encode(attrs))
    assert circular_distance(back["hue"], hue, 0, 360) < 1e-4
    assert back["key"] == key
    assert back["melody"] == MELODY.canonical(attrs["melody"])
    assert back["tempo"] == pytest.approx(tempo, rel=1e-5)
    # the JSON form (metadata.json's encoding) describes the same space
    again = CreativeSpace.from_json(space.to_json())
    assert np.array_equal(again.encode(back), space.encode(back))
    assert np.array_equal(space.encode_lenient([back]), space.encode(back)[None, :])


def test_structured_kinds_refuse_bad_values_clearly() -> None:
    space = CreativeSpace.from_attributes(ATTRS)
    good = {"hue": 10.0, "key": 3.0, "melody": "1:1/8 2:1/4 3:1/2 8:1/2", "tempo": 90.0}
    with pytest.raises(EncodingError, match="melody: step 0 degree='7'"):
        space.encode(good | {"melody": "7:1/8 2:1/4 3:1/2 8:1/2"})
    with pytest.raises(EncodingError, match="hue"):
        space.encode(good | {"hue": math.inf})
    lenient = space.encode_lenient([good | {"melody": "nonsense"}])[0]
    assert not lenient[4:40].any() and lenient[:4].any()  # a bad melody encodes as zeros
    with pytest.raises(EncodingError, match="divide"):
        CreativeSpace.from_attributes([ATTRS[1] | {"step": 5.0}])
