"""The quality gate: single-class data is refused before training; a model that does not
beat the baselines is not stored; what the trainer signs, inference's fetch accepts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.common.creative_space import CreativeSpace
from services.common.model_store import ModelStore
from services.common.signing import Signer, TrustedKeys, generate_key_pair
from services.inference.artifacts import fetch_verified
from services.inference.models import ModelBundle
from services.trainer.pipeline import QualityRefused, build_dataset, store_model
from services.trainer.quality import QualityGate
from services.trainer.synthetic import synthetic_campaign
from services.trainer.train import SingleClassError, TrainConfig, TrainingData, train
from tests.unit.trainer.conftest import Trained

GOOD = {
    "reward_auc": 0.74,
    "reward_logloss": 0.33,
    "reward_base_logloss": 0.37,
    "reward_ece": 0.01,
    "condition_fidelity": 0.65,
}


def test_gate_passes_a_model_that_beats_the_baselines() -> None:
    assert QualityGate().check(GOOD, 4) == []


@pytest.mark.parametrize(
    ("change", "word"),
    [
        ({"reward_auc": 0.5, "reward_logloss": 0.0, "reward_ece": 0.0}, "reward_auc"),  # degenerate
        ({"reward_auc": 0.515}, "reward_auc"),
        ({"reward_logloss": 0.38}, "reward_logloss"),
        ({"reward_ece": 0.2}, "reward_ece"),
        ({"condition_fidelity": 0.24}, "condition_fidelity"),
        ({"condition_fidelity": 0.24, "condition_fidelity_real": 0.6}, "condition_fidelity"),
        ({"reward_auc": float("nan")}, "reward_auc"),
    ],
)
def test_gate_refuses_with_the_reason(change: dict[str, float], word: str) -> None:
    reasons = QualityGate().check({**GOOD, **change}, 4)
    assert reasons and any(word in r for r in reasons), reasons


def test_a_generator_is_held_to_the_segment_signal_the_data_carry() -> None:
    """Rewarded creatives that do not tell the segments apart (one catalog served everywhere)
    leave nothing to condition on: the generator is not refused for that; once they do, it is
    refused for ignoring the segment."""
    gate = QualityGate()
    no_signal = {**GOOD, "condition_fidelity": 0.25, "condition_fidelity_real": 0.25}
    assert gate.check(no_signal, 4) == []
    assert gate.check({**no_signal, "condition_fidelity_real": 0.5}, 4)


def test_gate_thresholds_are_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.trainer.settings import Settings

    monkeypatch.setenv("ADMUSE_TRAINER_GATE_MIN_AUC_MARGIN", "0.3")
    gate = Settings().gate()
    assert gate.min_auc_margin == 0.3 and gate.check(GOOD, 4)


@pytest.mark.parametrize("label", [0.0, 1.0])
def test_single_class_is_refused_before_training(label: float) -> None:
    space = CreativeSpace.from_attributes(synthetic_campaign()["attributes"])
    n = 600
    data = TrainingData(
        space=space,
        segments=["*"],
        x=np.zeros((n, space.creative_dim), np.float32),
        segment=np.zeros(n, np.int64),
        reward=np.full(n, label),
        propensity=np.full(n, 0.5),
    )
    with pytest.raises(Exception) as err:
        train(data, TrainConfig.small())
    if label == 1.0:
        assert isinstance(err.value, SingleClassError) and err.value.reason == "single_class"
        assert "same label" in str(err.value)
    else:
        assert "earned a reward" in str(err.value)


def test_click_only_log_is_refused_by_build_dataset_and_train(trained: Trained) -> None:
    rows = [r for r in _rows(trained) if r.reward > 0]
    data, _ = build_dataset(trained.campaign, {c["creative_id"]: c for c in trained.catalog}, rows)
    with pytest.raises(SingleClassError):
        train(data, TrainConfig.small())


def test_failed_verdict_is_not_stored(trained: Trained, tmp_path: Path) -> None:
    built = trained.built
    failed = type(built)(**{**built.__dict__, "metadata": {**built.metadata}})
    failed.metadata["quality"] = {"passed": False, "reasons": ["reward_auc 0.5 ..."]}
    store = ModelStore(f"file://{tmp_path}/store")
    with pytest.raises(QualityRefused, match="reward_auc"):
        store_model(store, failed, Signer(generate_key_pair()[0]))
    assert store.list_dir("") == []


def test_signed_model_verifies_and_loads_in_inference(trained: Trained, tmp_path: Path) -> None:
    private, public, _ = generate_key_pair()
    assert trained.built.quality["passed"], trained.built.quality
    store = ModelStore(f"file://{tmp_path}/store")
    record = store_model(store, trained.built, Signer(private))
    assert {a["name"] for a in record["artifacts"]} == {
        "generator",
        "reward_model",
        "metadata",
        "signature",
    }
    metadata, blobs = fetch_verified(store, TrustedKeys.parse(public), record, 64 << 20)
    bundle = ModelBundle.load(metadata, blobs["generator"], blobs["reward_model"])
    assert bundle.version == trained.built.version


def _rows(trained: Trained) -> list:
    from services.trainer.buffer import RewardRow

    return [RewardRow.from_record(r) for r in trained.rewards]
