"""The one definition of rate intervals and lift (services/common/effects.py)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from services.common.effects import lift_over, wilson_interval, z_value


def test_wilson_interval_matches_known_values() -> None:
    low, high = wilson_interval(10, 100)
    assert low == pytest.approx(0.0552, abs=1e-4) and high == pytest.approx(0.1744, abs=1e-4)
    low, high = wilson_interval(np.array([0, 50, 0]), np.array([50, 50, 0]))
    assert low[0] == 0.0 and high[1] == 1.0 and np.isnan(low[2]) and np.isnan(high[2])


def test_the_quantile_is_the_normal_one() -> None:
    for confidence in (0.8, 0.95, 0.99):
        assert z_value(confidence) == pytest.approx(stats.norm.ppf(0.5 + confidence / 2))


def test_lift_is_over_the_segment_average_and_undefined_without_one() -> None:
    lift, low, high = lift_over(0.12, 0.10, 0.14, 0.08)
    assert (float(lift), float(low), float(high)) == pytest.approx((0.5, 0.25, 0.75))
    lift, low, high = lift_over(np.array([0.1, 0.1]), 0.05, 0.15, np.array([0.0, 0.05]))
    assert np.isnan(lift[0]) and lift[1] == pytest.approx(1.0)
