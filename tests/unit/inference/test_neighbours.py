"""Neighbours of proven creatives: one or two attributes redrawn, every value on the space."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.creative_space import CreativeSpace
from services.inference.admission import admit
from services.inference.candidates import propose
from services.inference.models import ModelBundle
from services.inference.neighbours import neighbours
from tests.unit.inference import onnx_fixtures as fx

ATTRIBUTES = [
    {"name": "layout", "kind": "categorical", "values": ["banner", "centered", "split"]},
    {"name": "background", "kind": "color"},
    {"name": "font_scale", "kind": "numeric", "min": 0.8, "max": 1.8},
    {"name": "key", "kind": "circular", "min": 0.0, "max": 12.0, "step": 1.0},
    {
        "name": "melody",
        "kind": "sequence",
        "length": 3,
        "fields": [{"name": "degree", "values": ["1", "3", "5"]}],
    },
]
CAMPAIGN = {"attributes": ATTRIBUTES, "forbidden": [], "min_contrast": 1.0}
SPACE = CreativeSpace.from_attributes(ATTRIBUTES)

anchors = st.fixed_dictionaries(
    {
        "layout": st.sampled_from(["banner", "centered", "split"]),
        "background": st.sampled_from(["#000000", "#f97316", "#1e3a8a", "#ffffff"]),
        "font_scale": st.floats(0.8, 1.8).map(lambda x: round(x, 6)),
        "key": st.integers(0, 11).map(float),
        "melody": st.lists(st.sampled_from(["1", "3", "5"]), min_size=3, max_size=3).map(" ".join),
    }
)


def _changed(a: dict, b: dict) -> int:
    out = 0
    for name in a:
        if name == "font_scale":
            out += abs(a[name] - b[name]) > 1e-5
        else:
            out += a[name] != b[name]
    return out


@settings(max_examples=40, deadline=None)
@given(st.lists(anchors, min_size=1, max_size=3), st.integers(0, 2**32 - 1), st.integers(1, 3))
def test_each_neighbour_is_an_anchor_with_at_most_max_changes_redrawn(
    given_anchors: list, seed: int, max_changes: int
) -> None:
    out = neighbours(SPACE, given_anchors, 30, np.random.default_rng(seed), max_changes=max_changes)
    assert len(out) == 30
    for c in out:
        assert admit(c, CAMPAIGN, []).admitted  # every value lies on the declared space
        assert min(_changed(c, a) for a in given_anchors) <= max_changes


def test_nothing_to_draw_around_gives_nothing() -> None:
    rng = np.random.default_rng(0)
    assert neighbours(SPACE, [], 10, rng) == []
    assert neighbours(SPACE, [{"layout": "banner"}], 0, rng) == []


def test_redraws_reach_the_whole_range() -> None:
    anchor = {"layout": "banner", "background": "#000000", "font_scale": 1.0, "key": 0.0,
              "melody": "1 1 1"}  # fmt: skip
    out = neighbours(SPACE, [anchor], 2000, np.random.default_rng(3), max_changes=1)
    assert {c["layout"] for c in out} == {"banner", "centered", "split"}
    scales = [c["font_scale"] for c in out if c["font_scale"] != 1.0]
    assert min(scales) < 0.9 and max(scales) > 1.7
    assert len({c["background"] for c in out}) > 100


def test_propose_scores_neighbours_beside_the_generators_samples() -> None:
    bias = np.zeros(fx.CREATIVE_DIM, dtype=np.float32)
    bias[8:11], bias[11:14] = -2.0, 2.0  # dark backgrounds, light text: most pass the gate
    bundle = ModelBundle.load(fx.metadata(), fx.generator(bias=bias), fx.reward_model())
    rules = fx.campaign()
    seg = fx.SEGMENTS[1]
    plain = propose(bundle, rules, seg, [], n_generate=8, n_admit=1, rng=np.random.default_rng(0))
    # the reward model favours "Last chance": an anchor that has it gives a better neighbour
    best = bundle.generate(seg, 64, np.random.default_rng(1))
    anchor = max(best, key=lambda c: float(bundle.score(seg, [c])[0]))
    found = propose(bundle, rules, seg, [], n_generate=8, n_admit=1,
                    rng=np.random.default_rng(0), anchors=[anchor],
                    n_neighbours=256)  # fmt: skip
    assert found[0]["predicted_reward"] >= plain[0]["predicted_reward"] - 1e-9
    assert found[0]["predicted_reward"] == pytest.approx(
        float(bundle.score(seg, [found[0]["attributes"]])[0])
    )
