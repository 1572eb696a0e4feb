"""Every sequence the gate admits keeps its domain's rules — checked against oracles written
here from the rules' statement, for generator outputs and for arbitrary sequences."""

from __future__ import annotations

import itertools

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.creative_space import CreativeSpace
from services.inference.admission import admit
from services.trainer.model import Generator, ModelConfig

from .fixtures import BEATS, DEGREES, DURATIONS, FILM_SPEC, MUSIC_SPEC, record

MUSIC, FILM = record(MUSIC_SPEC), record(FILM_SPEC)


def melody_ok(melody: str) -> bool:
    """In [1, 8], ends on 1, 3, 5 or 8, no leap over 4 degrees (MUSIC_SPEC's options)."""
    d = [int(step.split(":")[0]) for step in melody.split(" ")]
    return (
        all(1 <= x <= 8 for x in d)
        and d[-1] in (1, 3, 5, 8)
        and all(abs(b - a) <= 4 for a, b in itertools.pairwise(d))
    )


def story_ok(attrs: dict) -> bool:
    """hook before climax; not funeral with party; not betrayal in a comic tone."""
    beats = attrs["beats"].split(" ")
    if "hook" not in beats or "climax" not in beats[beats.index("hook") + 1 :]:
        return False
    present = set(beats) | {attrs["tone"]}
    return not ({"funeral", "party"} <= present or {"betrayal", "comic"} <= present)


def _generated(campaign: dict, n: int, seed: int) -> list[dict]:
    space = CreativeSpace.from_attributes(campaign["attributes"])
    torch.manual_seed(seed)
    gen = Generator(space.blocks(), 1, ModelConfig(noise_dim=8, hidden=32)).eval()
    with torch.no_grad():
        out = gen(
            torch.randn(n, 8),
            torch.ones(n, 1),
            torch.from_numpy(
                np.random.default_rng(seed).gumbel(size=(n, space.gumbel_dim)).astype(np.float32)
            ),
        )
    return space.decode_many(out.numpy(), digits=3)


@settings(max_examples=5, deadline=None)
@given(st.integers(0, 2**16))
def test_admitted_generator_outputs_keep_the_rules(seed: int) -> None:
    for campaign, ok, key in ((MUSIC, melody_ok, "melody"), (FILM, story_ok, None)):
        admitted = 0
        for attrs in _generated(campaign, 300, seed):
            verdict = admit(attrs, campaign, [])
            passes = ok(attrs[key]) if key else ok(attrs)
            assert verdict.admitted == passes, (attrs, verdict)
            admitted += verdict.admitted
        assert admitted < 300  # the rules did refuse some of the untrained generator's output


melodies = st.lists(
    st.tuples(st.sampled_from(DEGREES), st.sampled_from(DURATIONS)), min_size=6, max_size=6
).map(lambda s: " ".join(f"{d}:{t}" for d, t in s))
stories = st.fixed_dictionaries(
    {
        "beats": st.lists(st.sampled_from(BEATS), min_size=5, max_size=5).map(" ".join),
        "protagonist": st.sampled_from(["reluctant_hero", "trickster"]),
        "tone": st.sampled_from(["dark", "comic", "hopeful"]),
        "ending": st.sampled_from(["happy", "bittersweet"]),
    }
)
TRACK = {"tempo": 100.0, "key": 3.0, "instrument": "pluck", "lyric": "Sing it loud"}


@settings(max_examples=100)
@given(melodies)
def test_any_admitted_melody_keeps_the_rules(melody: str) -> None:
    assert admit(TRACK | {"melody": melody}, MUSIC, []).admitted == melody_ok(melody)


@settings(max_examples=100)
@given(stories)
def test_any_admitted_story_keeps_the_rules(attrs: dict) -> None:
    assert admit(attrs, FILM, []).admitted == story_ok(attrs)
