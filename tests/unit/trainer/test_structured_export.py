"""Circular and sequence attributes through the networks and their ONNX export."""

import numpy as np
import torch

from services.common.attribute_kinds import circular_distance
from services.common.creative_space import CreativeSpace
from services.trainer.export import export_and_check, export_generator, onnx_session
from services.trainer.model import Generator, ModelConfig, RewardModel

ATTRS = [
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
    {"name": "tempo", "kind": "numeric", "min": 60.0, "max": 180.0},
]
SPACE = CreativeSpace.from_attributes(ATTRS)
CFG = ModelConfig(noise_dim=8, hidden=32, critic_hidden=32, reward_hidden=16)


def _models() -> tuple[Generator, RewardModel]:
    torch.manual_seed(0)
    continuous = [o + i for k, o, w in SPACE.blocks() if k != "categorical" for i in range(w)]
    gen = Generator(SPACE.blocks(), 3, CFG).eval()
    return gen, RewardModel(SPACE.creative_dim, 3, CFG, continuous).eval()


def test_generator_emits_points_on_the_circle_and_valid_steps() -> None:
    gen, _ = _models()
    session = onnx_session(export_generator(gen))
    rng = np.random.default_rng(1)
    n = 256
    out = session.run(
        None,
        {
            "noise": rng.standard_normal((n, 8)).astype(np.float32),
            "segment": np.eye(3, dtype=np.float32)[rng.integers(0, 3, n)],
            "gumbel": rng.gumbel(size=(n, SPACE.gumbel_dim)).astype(np.float32),
        },
    )[0]
    assert out.shape == (n, SPACE.creative_dim)
    radius = np.hypot(out[:, 0] - 0.5, out[:, 1] - 0.5)
    assert np.allclose(radius, 0.5, atol=1e-3)  # on the circle: the range's ends meet
    for off, width in SPACE.categorical_blocks():
        assert np.all(out[:, off : off + width].sum(1) == 1)  # one token per step field
    decoded = SPACE.decode_many(out)
    assert {d["key"] for d in decoded} <= {float(k) for k in range(12)}
    for d, row in zip(decoded, out, strict=True):
        assert np.array_equal(SPACE.encode(d)[2:-1], row[2:-1])  # the steps are the creative
        key = np.arctan2(row[1] - 0.5, row[0] - 0.5) % (2 * np.pi) / (2 * np.pi) * 12
        assert circular_distance(d["key"], key, 0, 12) <= 1 / 12 + 1e-6  # nearest of 12


def test_export_parity_holds_for_structured_spaces() -> None:
    gen, rm = _models()
    exported = export_and_check(gen, rm)
    assert exported.generator_max_diff < 1e-4 and exported.reward_max_diff < 1e-4


def test_training_runs_on_a_structured_space() -> None:
    from services.trainer.train import TrainConfig, TrainingData, train

    rng = np.random.default_rng(2)
    n = 400
    rows = [
        {
            "key": float(rng.integers(0, 12)),
            "melody": " ".join(f"{rng.choice(['1', '3', '5', '8'])}:1/4" for _ in range(4)),
            "tempo": float(rng.uniform(60, 180)),
        }
        for _ in range(n)
    ]
    x = SPACE.encode_many(rows)
    # listeners like keys near 0 on the circle of fifths (11 and 1 as much as each other)
    like = np.array([1 - circular_distance(r["key"], 0, 0, 12) for r in rows])
    reward = (rng.uniform(size=n) < 0.1 + 0.6 * like**2).astype(float)
    data = TrainingData(SPACE, ["all"], x, np.zeros(n, int), reward, np.full(n, 0.1))
    cfg = TrainConfig.small().with_overrides(gan_steps=30, reward_epochs=3)
    result = train(data, cfg, seed=3)
    assert np.isfinite(result.metrics["reward_logloss"])
    exported = export_and_check(result.generator, result.reward_model)
    assert exported.generator_max_diff < 1e-4
