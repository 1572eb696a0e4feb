import numpy as np
import pytest

from services.common.creative_space import CreativeSpace
from services.trainer.quality import (
    auc,
    detection_auc,
    diversity,
    expected_calibration_error,
    fidelity,
    log_loss,
)
from services.trainer.synthetic import synthetic_campaign


def test_auc_matches_pair_counting() -> None:
    y = np.array([0, 0, 1, 1, 0, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8, 0.4, 0.4])
    pairs = [(p, n) for p in np.flatnonzero(y) for n in np.flatnonzero(y == 0)]
    want = np.mean([1.0 if s[p] > s[n] else 0.5 if s[p] == s[n] else 0.0 for p, n in pairs])
    assert auc(y, s) == pytest.approx(want)
    assert auc(np.ones(3), np.arange(3)) == 0.5


def test_calibration_error_is_small_for_calibrated_and_large_for_overconfident() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 20000)
    y = (rng.uniform(size=p.size) < p).astype(float)
    assert expected_calibration_error(y, p) < 0.02
    assert expected_calibration_error(y, np.where(p > 0.5, 0.99, 0.01)) > 0.2
    assert log_loss(y, p) < log_loss(y, np.where(p > 0.5, 0.99, 0.01))


def test_fidelity_separates_same_from_different_distributions() -> None:
    space = CreativeSpace.from_attributes(synthetic_campaign()["attributes"])
    rng = np.random.default_rng(1)

    def sample(n: int, shift: float) -> np.ndarray:
        x = np.zeros((n, space.creative_dim), np.float32)
        for off, width in space.categorical_blocks():
            p = np.full(width, 1.0)
            p[0] += shift * 10
            x[np.arange(n), off + rng.choice(width, n, p=p / p.sum())] = 1
        x[:, 10:] = np.clip(rng.normal(0.3 + shift, 0.1, (n, 4)), 0, 1)
        return x

    real = sample(2000, 0.0)
    assert fidelity(space, real, np.ones(2000), sample(2000, 0.0)) > 0.95
    assert fidelity(space, real, np.ones(2000), sample(2000, 0.5)) < 0.6
    assert detection_auc(real, sample(2000, 0.0)) < 0.56
    assert detection_auc(real, sample(2000, 0.5)) > 0.9
    assert diversity(space, real) > 0.9
    assert diversity(space, np.repeat(real[:1], 50, axis=0)) == pytest.approx(1 / 50)
