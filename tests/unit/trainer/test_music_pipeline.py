"""A music campaign through the trainer's pipeline and inference's model bundle: circular keys
and melodies are learned, exported, loaded, generated and judged by the music domain's gate."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from services.common.attribute_kinds import circular_distance
from services.common.campaign import creative_records, parse_spec
from services.inference.admission import admit
from services.inference.models import ModelBundle
from services.trainer.buffer import RewardRow
from services.trainer.pipeline import build_model
from services.trainer.synthetic import synthetic_rewards
from services.trainer.train import TrainConfig
from tests.unit.domains.fixtures import MUSIC_SPEC, record

pytestmark = pytest.mark.slow

MELODIES = ["1:1 3:1 5:1 8:2 5:1/2 3:1", "5:1/2 3:1/2 2:1 1:2 2:1 1:1", "3:1 4:1 5:1 6:1 7:1 8:2"]


class _Truth:
    """Listeners like keys near D (2 on the circle of fifths, so 1 and 3 do too; 11 hardly)
    and fast tempos; only the synthetic rewards and this test know it."""

    def contexts(self) -> list[dict[str, str]]:
        return [{}]

    def segments(self) -> list[str]:
        return ["*"]

    def ctr(self, segment: str, attributes: dict) -> float:
        near = 1 - circular_distance(float(attributes["key"]), 2.0, 0, 12)
        return 0.03 + 0.25 * near**3 + 0.1 * (float(attributes["tempo"]) - 70) / 90


def _catalog() -> tuple[dict, list[dict]]:
    seeds = [
        {
            "name": f"t{i}",
            "attributes": {
                "melody": m,
                "tempo": t,
                "key": k,
                "instrument": "sine",
                "lyric": "Sing it loud",
            },
        }
        for i, (m, t, k) in enumerate(itertools.product(MELODIES, (80, 150), (0, 2, 6, 11)))
    ]
    spec = parse_spec({**MUSIC_SPEC, "seeds": seeds})
    return record({**MUSIC_SPEC, "seeds": seeds}), creative_records(spec)


def test_music_models_generate_admissible_tracks_where_listeners_want_them() -> None:
    campaign, catalog = _catalog()
    rewards = synthetic_rewards(catalog, 4000, _Truth(), seed=4)  # type: ignore[arg-type]
    rows = [RewardRow.from_record(r) for r in rewards]
    cfg = TrainConfig.small().with_overrides(gan_steps=250)
    built = build_model(campaign, {c["creative_id"]: c for c in catalog}, rows, cfg, seed=5)
    bundle = ModelBundle.load(built.metadata, built.exported.generator, built.exported.reward_model)
    tracks = bundle.generate("*", 300, np.random.default_rng(0))
    verdicts = [admit(t, campaign, []) for t in tracks]
    assert not [v for v in verdicts if v.reason == "invalid_value"]  # every output decodes
    admitted = [t for t, v in zip(tracks, verdicts, strict=True) if v.admitted]
    assert len(admitted) >= 10
    assert {t["key"] for t in tracks} <= {float(k) for k in range(12)}
    # the reward model prefers D to its opposite, through the circle (11 and 1 are neighbours)
    d, ab = (dict(tracks[0], key=k, tempo=150.0) for k in (2.0, 8.0))
    assert bundle.score("*", [d])[0] > bundle.score("*", [ab])[0]
    near = np.mean([circular_distance(t["key"], 2.0, 0, 12) for t in tracks])
    assert near < 0.5  # generated keys lean towards D (uniform keys average 0.5)
