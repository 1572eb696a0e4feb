"""Acceptance on the synthetic campaign: the trainer learns who likes what.

The ground truth (attribute × segment interactions) is known only to the test; data is logged
under uniform exploration over the catalog with propensity 1/|catalog|.
"""

import json
from datetime import UTC, datetime

import numpy as np
import pytest
import torch

from services.common.creative_space import CreativeSpace
from services.trainer.buffer import RewardRow
from services.trainer.export import onnx_session
from services.trainer.pipeline import build_dataset
from services.trainer.synthetic import synthetic_campaign, synthetic_catalog, synthetic_rewards
from services.trainer.train import TrainConfig, TrainingError, pick_device, train

from .conftest import Trained

pytestmark = pytest.mark.slow


def _generate(built, segment_index: int, n: int, seed: int = 11) -> np.ndarray:
    rng = np.random.default_rng(seed)
    meta = built.metadata
    seg = np.zeros((n, len(meta["segments"])), np.float32)
    seg[:, segment_index] = 1.0
    feeds = {
        "noise": rng.standard_normal((n, meta["noise_dim"])).astype(np.float32),
        "segment": seg,
        "gumbel": (-np.log(-np.log(rng.uniform(1e-9, 1, (n, meta["gumbel_dim"]))))).astype(
            np.float32
        ),
    }
    return onnx_session(built.exported.generator).run(None, feeds)[0]


def test_generated_creatives_beat_the_catalog_in_every_segment(trained: Trained) -> None:
    built, truth = trained.built, trained.truth
    space = CreativeSpace.from_json(built.metadata["encoding"])
    assert built.metadata["segments"] == sorted(truth.segments())
    for i, segment in enumerate(built.metadata["segments"]):
        generated = space.decode_many(_generate(built, i, 400))
        generated_ctr = np.mean([truth.ctr(segment, a) for a in generated])
        catalog_ctr = np.mean([truth.ctr(segment, c["attributes"]) for c in trained.catalog])
        assert generated_ctr > catalog_ctr, segment


def test_reward_model_ranks_held_out_rewards(trained: Trained) -> None:
    m = trained.built.metrics
    assert m["reward_auc"] > 0.65
    assert m["reward_ece"] < 0.05
    assert 0 < m["reward_logloss"] < 0.6
    # On fresh data, too: the exported reward model against fresh logged outcomes.
    fresh = synthetic_rewards(trained.catalog, 3000, trained.truth, seed=99)
    data, _ = build_dataset(
        trained.campaign,
        {c["creative_id"]: c for c in trained.catalog},
        [RewardRow.from_record(r) for r in fresh],
    )
    from services.trainer.quality import auc

    p = onnx_session(trained.built.exported.reward_model).run(
        None, {"segment": data.onehot(), "creative": data.x}
    )[0][:, 0]
    assert auc(data.reward, p) > 0.65


def test_quality_report_is_in_the_metadata(trained: Trained) -> None:
    m = trained.built.metadata["metrics"]
    for key in (
        "fidelity_mean",
        "fidelity_min",
        "detection_auc",
        "diversity",
        "condition_fidelity",
        "predicted_reward_generated",
        "predicted_reward_catalog",
        "reward_logloss",
        "reward_ece",
        "reward_auc",
    ):
        assert key in m and np.isfinite(m[key]), key
    assert m["predicted_reward_generated"] > m["predicted_reward_catalog"]
    assert m["condition_fidelity"] > 1 / len(trained.built.metadata["segments"])
    assert 0.0 <= m["fidelity_min"] <= m["fidelity_mean"] <= 1.0


def test_metadata_follows_the_artifact_contract(trained: Trained) -> None:
    built = trained.built
    meta = json.loads(built.files()["metadata"][1])
    assert meta["format"] == 1 and meta["campaign_id"] == "spring"
    assert meta["version"] == built.version
    assert meta["creative_dim"] == sum(c["width"] for c in meta["encoding"])
    assert meta["gumbel_dim"] == sum(
        c["width"] for c in meta["encoding"] if c["kind"] == "categorical"
    )
    assert meta["seed"] == 7 and meta["training_rows"] == 12000
    first, last = (trained.rewards[0]["decided_at"], trained.rewards[-1]["decided_at"])
    assert meta["training_window"] == {"from": _iso(first), "to": _iso(last)}
    assert meta["versions"]["opset"] >= 18 and meta["versions"]["torch"]
    gen = onnx_session(built.exported.generator)
    assert [(i.name, i.shape[1]) for i in gen.get_inputs()] == [
        ("noise", meta["noise_dim"]),
        ("segment", len(meta["segments"])),
        ("gumbel", meta["gumbel_dim"]),
    ]
    rm = onnx_session(built.exported.reward_model)
    assert [i.name for i in rm.get_inputs()] == ["segment", "creative"]
    assert rm.get_outputs()[0].name == "p_reward"


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def _contract_decode(meta: dict, row: np.ndarray) -> dict:
    """A decoder written from docs/contracts.md alone: numpy and the metadata, nothing else."""
    out = {}
    for col in meta["encoding"]:
        block = row[col["offset"] : col["offset"] + col["width"]]
        if col["kind"] == "categorical":
            out[col["name"]] = col["values"][int(np.argmax(block))]
        elif col["kind"] == "numeric":
            out[col["name"]] = col["min"] + float(block[0]) * (col["max"] - col["min"])
        else:
            out[col["name"]] = "#" + "".join(f"{round(255 * float(c)):02x}" for c in block)
    return out


def test_metadata_decodes_generated_creatives_without_trainer_code(trained: Trained) -> None:
    meta = json.loads(trained.built.files()["metadata"][1])
    space = CreativeSpace.from_json(meta["encoding"])
    rows = _generate(trained.built, 0, 50)
    for row in rows:
        mine, theirs = space.decode(row), _contract_decode(meta, row)
        assert mine.keys() == theirs.keys()
        for k, v in mine.items():
            assert v == pytest.approx(theirs[k]) if isinstance(v, float) else v == theirs[k]
        # and the decoded creative encodes back to the generated vector
        assert np.allclose(space.encode(mine)[: space.gumbel_dim], row[: space.gumbel_dim])


def _tiny_run(seed: int) -> dict[str, torch.Tensor]:
    catalog = synthetic_catalog(n=6)
    rows = [RewardRow.from_record(r) for r in synthetic_rewards(catalog, 600, seed=5)]
    data, _ = build_dataset(synthetic_campaign(), {c["creative_id"]: c for c in catalog}, rows)
    cfg = TrainConfig.small().with_overrides(gan_steps=15, reward_epochs=2)
    result = train(data, cfg, seed=seed)
    return {
        **result.generator.state_dict(),
        **{f"rm.{k}": v for k, v in result.reward_model.state_dict().items()},
    }


def test_same_seed_reproduces_the_weights_on_cpu() -> None:
    a, b, c = _tiny_run(3), _tiny_run(3), _tiny_run(4)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_no_rewards_is_a_clear_error() -> None:
    catalog = synthetic_catalog(n=4)
    records = synthetic_rewards(catalog, 100, seed=5)
    rows = [RewardRow.from_record(r | {"reward": 0.0}) for r in records]
    data, _ = build_dataset(synthetic_campaign(), {c["creative_id"]: c for c in catalog}, rows)
    with pytest.raises(TrainingError, match="no decision"):
        train(data, TrainConfig.small())


def test_rows_with_unknown_or_foreign_creatives_are_skipped_and_counted() -> None:
    catalog = synthetic_catalog(n=4)
    creatives = {c["creative_id"]: c for c in catalog}
    creatives["odd"] = catalog[0] | {"creative_id": "odd", "attributes": {"layout": "circle"}}
    rows = [RewardRow.from_record(r) for r in synthetic_rewards(catalog, 50, seed=5)]
    rows += [RewardRow("x1", "*", "nope", 0.5, 1.0, 1), RewardRow("x2", "*", "odd", 0.5, 1.0, 1)]
    data, skipped = build_dataset(synthetic_campaign(), creatives, rows)
    assert len(data.x) == 50
    assert skipped == {"unknown_creative": 1, "bad_creative": 1}


def test_device_is_cpu_without_cuda_and_asking_for_cuda_is_a_clear_error() -> None:
    if torch.cuda.is_available():
        assert pick_device("auto").type == "cuda"
        return
    assert pick_device("auto").type == "cpu"
    with pytest.raises(TrainingError, match="no CUDA"):
        pick_device("cuda")


def test_a_model_whose_export_disagrees_is_not_built(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.trainer import export
    from services.trainer.export import ExportError
    from services.trainer.model import Generator
    from services.trainer.pipeline import build_model

    real_export = export.export_generator

    def export_other_weights(gen: Generator) -> bytes:
        other = Generator(gen.blocks, gen.n_segments, TrainConfig.small().model)
        return real_export(other)

    monkeypatch.setattr(export, "export_generator", export_other_weights)
    catalog = synthetic_catalog(n=6)
    rows = [RewardRow.from_record(r) for r in synthetic_rewards(catalog, 600, seed=5)]
    cfg = TrainConfig.small().with_overrides(gan_steps=5, reward_epochs=1)
    with pytest.raises(ExportError, match="refusing to publish"):
        build_model(synthetic_campaign(), {c["creative_id"]: c for c in catalog}, rows, cfg)


def test_settings_pick_the_training_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.trainer.pipeline import train_config
    from services.trainer.settings import Settings

    monkeypatch.setenv("ADMUSE_TRAINER_PROFILE", "small")
    monkeypatch.setenv("ADMUSE_TRAINER_GAN_STEPS", "33")
    cfg = train_config(Settings())
    assert cfg.gan_steps == 33 and cfg.model == TrainConfig.small().model
    monkeypatch.setenv("ADMUSE_TRAINER_PROFILE", "huge")
    with pytest.raises(ValueError, match="profile"):
        Settings()


def test_a_campaign_without_segment_keys_trains_one_segment() -> None:
    from services.trainer.pipeline import build_model

    catalog = synthetic_catalog(n=6)
    rows = [
        RewardRow.from_record(r | {"segment": "*"}) for r in synthetic_rewards(catalog, 400, seed=5)
    ]
    cfg = TrainConfig.small().with_overrides(gan_steps=5, reward_epochs=1)
    campaign = synthetic_campaign() | {"segment_keys": []}
    built = build_model(campaign, {c["creative_id"]: c for c in catalog}, rows, cfg)
    assert built.metadata["segments"] == ["*"]
    assert "condition_fidelity" not in built.metrics
    assert np.isfinite(built.metrics["fidelity_mean"])


def test_rewards_without_known_creatives_are_a_clear_error() -> None:
    from services.trainer.pipeline import build_model

    catalog = synthetic_catalog(n=6)
    rows = [RewardRow.from_record(r) for r in synthetic_rewards(catalog, 100, seed=5)]
    with pytest.raises(TrainingError, match=r"none of 100 rewards has a known creative"):
        build_model(synthetic_campaign(), {}, rows, TrainConfig.small())


def test_settings_set_the_reward_models_training_budget_and_bends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from services.trainer.pipeline import train_config
    from services.trainer.settings import Settings

    monkeypatch.setenv("ADMUSE_TRAINER_PROFILE", "small")
    monkeypatch.setenv("ADMUSE_TRAINER_REWARD_EPOCHS", "7")
    monkeypatch.setenv("ADMUSE_TRAINER_REWARD_MAX_STEPS", "90")
    monkeypatch.setenv("ADMUSE_TRAINER_REWARD_BENDS", "0")
    cfg = train_config(Settings())
    assert (cfg.reward_epochs, cfg.max_reward_steps, cfg.model.reward_bends) == (7, 90, 0)
    assert cfg.model.reward_hidden == TrainConfig.small().model.reward_hidden


def test_reward_model_fits_an_effect_that_peaks_mid_range_and_exports_with_parity() -> None:
    """One segment likes font scale 1.3 (mid-range), the other 0.85 (near the low end): the
    trained reward model's response peaks where each segment's does, and ONNX agrees."""
    from services.trainer.export import export_and_check

    campaign = {
        "campaign_id": "peak",
        "attributes": [
            {"name": "cta", "kind": "categorical", "values": ["a", "b"]},
            {"name": "font_scale", "kind": "numeric", "min": 0.8, "max": 1.8},
        ],
    }
    space = CreativeSpace.from_attributes(campaign["attributes"])
    rng = np.random.default_rng(3)
    n = 12_000
    seg = rng.integers(0, 2, n)
    scale = rng.uniform(0.8, 1.8, n)
    peak = np.where(seg == 0, 1.3, 0.85)
    p = 1 / (1 + np.exp(-(-1.0 - 12.0 * (scale - peak) ** 2)))
    from services.trainer.train import TrainingData

    data = TrainingData(
        space,
        ["s0", "s1"],
        space.encode_many({"cta": "a", "font_scale": float(x)} for x in scale),
        seg,
        (rng.random(n) < p).astype(float),
        np.full(n, 0.5),
    )
    cfg = TrainConfig.small().with_overrides(gan_steps=1, max_reward_steps=500)
    result = train(data, cfg, seed=1)
    grid = np.linspace(0.8, 1.8, 21)
    x = torch.from_numpy(space.encode_many({"cta": "a", "font_scale": float(v)} for v in grid))
    for i, want in ((0, 1.3), (1, 0.85)):
        s = torch.zeros(len(grid), 2)
        s[:, i] = 1.0
        with torch.no_grad():
            pred = result.reward_model(s, x).squeeze(1).numpy()
        assert abs(grid[int(np.argmax(pred))] - want) <= 0.15
        assert pred.max() > pred[-1] + 0.1
        if i == 0:  # falls off on both sides of the mid-range peak
            assert pred.max() > pred[0] + 0.1
    exported = export_and_check(result.generator, result.reward_model)
    assert exported.reward_max_diff < 1e-4
