"""The proposal searches: local (neighbours) and global (the generator) compete for slots on
their record (`services/inference/searches.py`)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from services.inference.admission import admit
from services.inference.candidates import propose
from services.inference.models import ModelBundle
from services.inference.neighbours import neighbours
from services.inference.searches import GLOBAL, LOCAL, PRIOR, pick, record, search_of
from tests.unit.inference import onnx_fixtures as fx
from tests.unit.inference.test_neighbours import ATTRIBUTES, SPACE, anchors

BY_NAME = {a["name"]: a for a in ATTRIBUTES}


@settings(max_examples=40, deadline=None)
@given(st.lists(anchors, min_size=1, max_size=3), st.integers(0, 2**32 - 1))
def test_every_neighbour_is_local_to_its_anchors(given_anchors: list, seed: int) -> None:
    # a value that went through the encoding and back counts as unchanged
    for c in neighbours(SPACE, given_anchors, 30, np.random.default_rng(seed)):
        assert search_of(c, given_anchors, BY_NAME) == LOCAL


def test_three_attributes_changed_is_global() -> None:
    proven = {"layout": "banner", "background": "#000000", "font_scale": 1.0, "key": 0.0,
              "melody": "1 1 1"}  # fmt: skip
    two = {**proven, "layout": "split", "font_scale": 1.5}
    three = {**two, "background": "#f97316"}
    assert search_of(two, [proven], BY_NAME) == LOCAL
    assert search_of(three, [proven], BY_NAME) == GLOBAL
    assert search_of({"attributes": three}, [{"attributes": three}], BY_NAME) == LOCAL
    assert search_of(three, [], BY_NAME) == GLOBAL  # nothing proven: nothing is near


def test_record_counts_promotions_and_retirements_per_search() -> None:
    rec = record([(LOCAL, True), (LOCAL, False), (GLOBAL, False), (GLOBAL, False)])
    assert rec == {LOCAL: (1, 1), GLOBAL: (0, 2)}
    assert record([]) == {LOCAL: (0, 0), GLOBAL: (0, 0)}


@settings(max_examples=30, deadline=None)
@given(
    st.integers(0, 8), st.integers(0, 8), st.integers(0, 8), st.integers(0, 8),
    st.integers(0, 2**32 - 1),
)  # fmt: skip
def test_slots_follow_the_record(lw: int, ll: int, gw: int, gl: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    out = pick({LOCAL: (lw, ll), GLOBAL: (gw, gl)}, 4000, rng)
    share = out.count(LOCAL) / len(out)
    (la, lb), (ga, gb) = PRIOR[LOCAL], PRIOR[GLOBAL]
    mean_local, mean_global = (la + lw) / (la + lb + lw + ll), (ga + gw) / (ga + gb + gw + gl)
    if mean_local > mean_global + 0.2:
        assert share > 0.6
    if mean_global > mean_local + 0.2:
        assert share < 0.4


def test_a_losing_search_keeps_some_slots() -> None:
    # never none: a search whose first challengers lost can earn its slots back
    out = pick({LOCAL: (0, 0), GLOBAL: (0, 3)}, 4000, np.random.default_rng(1))
    assert 0.01 < out.count(GLOBAL) / len(out) < 0.1
    out = pick({LOCAL: (0, 3), GLOBAL: (2, 1)}, 4000, np.random.default_rng(1))
    assert 0.15 < out.count(LOCAL) / len(out) < 0.4


def test_a_winning_generator_outgrows_the_local_head_start() -> None:
    out = pick({LOCAL: (0, 2), GLOBAL: (2, 0)}, 4000, np.random.default_rng(2))
    assert out.count(GLOBAL) / len(out) > 0.65


def test_a_new_campaign_starts_local_five_slots_in_six() -> None:
    # Beta(2, 1) against Beta(1, 2): P(local draw > global draw) = 5/6
    out = pick(record([]), 4000, np.random.default_rng(0))
    assert 0.80 < out.count(LOCAL) / len(out) < 0.87


def _bundle_and_anchor() -> tuple[ModelBundle, dict, str]:
    bias = np.zeros(fx.CREATIVE_DIM, dtype=np.float32)
    bias[8:11], bias[11:14] = -2.0, 2.0  # dark backgrounds, light text: most pass the gate
    bundle = ModelBundle.load(fx.metadata(), fx.generator(bias=bias), fx.reward_model())
    seg = fx.SEGMENTS[1]
    drawn = bundle.generate(seg, 64, np.random.default_rng(7))
    anchor = next(c for c in drawn if admit(c, fx.campaign(), []).admitted)
    return bundle, anchor, seg


def test_each_slot_takes_the_best_candidate_of_its_search() -> None:
    bundle, anchor, seg = _bundle_and_anchor()
    rules = fx.campaign()
    space = {a["name"]: a for a in rules["attributes"]}

    def run(searches: list[str] | None, n: int) -> list[dict]:
        return propose(bundle, rules, seg, [], n_generate=128, n_admit=n,
                       rng=np.random.default_rng(0), anchors=[anchor], n_neighbours=128,
                       searches=searches)  # fmt: skip

    kinds = lambda out: [search_of(c["attributes"], [anchor], space) for c in out]  # noqa: E731
    assert kinds(run([LOCAL], 1)) == [LOCAL]
    assert kinds(run([GLOBAL], 1)) == [GLOBAL]
    assert sorted(kinds(run([GLOBAL, LOCAL], 2))) == [GLOBAL, LOCAL]
    # the best local one is the best-ranked local candidate of the whole pool
    everything = run(None, 400)
    best_local = next(c for c in everything if search_of(c["attributes"], [anchor], space) == LOCAL)
    assert run([LOCAL], 1)[0]["attributes"] == best_local["attributes"]


def test_a_search_without_candidates_gives_its_slot_to_the_other() -> None:
    bundle, _, seg = _bundle_and_anchor()
    out = propose(bundle, fx.campaign(), seg, [], n_generate=64, n_admit=2,
                  rng=np.random.default_rng(0), anchors=[], n_neighbours=0,
                  searches=[LOCAL, LOCAL])  # fmt: skip
    assert len(out) == 2  # no anchors: nothing is local, the generator's samples fill both
