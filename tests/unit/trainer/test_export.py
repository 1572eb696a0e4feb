import numpy as np
import onnx
import pytest
import torch

from services.trainer.export import (
    ExportError,
    check_generator_parity,
    check_reward_parity,
    export_and_check,
    export_generator,
    export_reward_model,
    onnx_session,
)
from services.trainer.model import Generator, ModelConfig, RewardModel

BLOCKS = [("categorical", 0, 3), ("categorical", 3, 4), ("numeric", 7, 1), ("color", 8, 3)]
CFG = ModelConfig(noise_dim=8, hidden=32, critic_hidden=32, reward_hidden=16)


def _models(seed: int = 0) -> tuple[Generator, RewardModel]:
    torch.manual_seed(seed)
    return Generator(BLOCKS, 3, CFG).eval(), RewardModel(11, 3, CFG).eval()


def _feeds(rows: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    seg = np.eye(3, dtype=np.float32)[rng.integers(0, 3, rows)]
    gumbel = -np.log(-np.log(rng.uniform(1e-9, 1, (rows, 7))))
    return {
        "noise": rng.standard_normal((rows, 8)).astype(np.float32),
        "segment": seg,
        "gumbel": gumbel.astype(np.float32),
    }


def test_generator_graph_follows_the_contract() -> None:
    gen, _ = _models()
    data = export_generator(gen)
    model = onnx.load_from_string(data)
    assert model.opset_import[0].version >= 18
    ops = {n.op_type for n in model.graph.node}
    assert not {op for op in ops if "Random" in op or op in {"Multinomial", "Bernoulli"}}
    session = onnx_session(data)
    assert [(i.name, i.shape[1]) for i in session.get_inputs()] == [
        ("noise", 8),
        ("segment", 3),
        ("gumbel", 7),
    ]
    for rows in (1, 5, 1024):  # dynamic batch
        out = session.run(None, _feeds(rows))[0]
        assert out.shape == (rows, 11) and out.dtype == np.float32
        assert np.all(out[:, 0:3].sum(1) == 1) and np.all(out[:, 3:7].sum(1) == 1)
        assert set(np.unique(out[:, :7])) <= {0.0, 1.0}
        assert np.all((out[:, 7:] >= 0) & (out[:, 7:] <= 1))


def test_gumbel_input_drives_the_categorical_choice() -> None:
    gen, _ = _models()
    session = onnx_session(export_generator(gen))
    feeds = _feeds(4)
    feeds["gumbel"][:] = 0
    feeds["gumbel"][:, 2] = 1e4  # force value 2 of the first block
    out = session.run(None, feeds)[0]
    assert out[:, 0:3].argmax(1).tolist() == [2, 2, 2, 2]


def test_reward_graph_outputs_probabilities() -> None:
    _, rm = _models()
    session = onnx_session(export_reward_model(rm, 3, 11))
    p = session.run(
        None,
        {
            "segment": np.zeros((6, 3), np.float32),
            "creative": np.random.default_rng(0).uniform(0, 1, (6, 11)).astype(np.float32),
        },
    )[0]
    assert p.shape == (6, 1) and np.all((p > 0) & (p < 1))


def test_parity_passes_for_a_faithful_export() -> None:
    gen, rm = _models()
    exported = export_and_check(gen, rm)
    assert exported.generator_max_diff < 1e-4 and exported.reward_max_diff < 1e-4


def test_corrupted_export_is_refused() -> None:
    gen, rm = _models()
    data = bytearray(export_generator(gen))
    data[len(data) // 3 : len(data) // 3 + 64] = b"\xff" * 64
    with pytest.raises(ExportError):
        check_generator_parity(gen, bytes(data))
    with pytest.raises(ExportError, match="cannot load"):
        check_reward_parity(rm, b"garbage", 3, 11)


def test_export_of_other_weights_is_refused() -> None:
    gen, rm = _models(seed=0)
    other_gen, other_rm = _models(seed=1)
    with pytest.raises(ExportError, match="refusing to publish"):
        check_generator_parity(gen, export_generator(other_gen))
    with pytest.raises(ExportError, match="refusing to publish"):
        check_reward_parity(rm, export_reward_model(other_rm, 3, 11), 3, 11)


def test_export_with_the_wrong_inputs_is_refused() -> None:
    gen, rm = _models()
    narrower = Generator(BLOCKS, 2, CFG).eval()
    with pytest.raises(ExportError, match="segment"):
        check_generator_parity(gen, export_generator(narrower))
    with pytest.raises(ExportError, match="graph inputs"):
        check_reward_parity(rm, export_generator(gen), 3, 11)
