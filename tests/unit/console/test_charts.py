"""Charts, series and masking: the pieces that turn data into what the page shows."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

from hypothesis import given
from hypothesis import strategies as st

from services.analysis.report import build_report
from services.console.charts import interval_bars, line_chart
from services.console.experiment import Point, ctr_series, regret_by_arm
from services.console.ops import mask_identities
from tests.unit.console.conftest import rewards


@given(st.text(max_size=40), st.text(max_size=40))
def test_charts_are_well_formed_svg_whatever_the_labels(arm: str, label: str) -> None:
    pts = [Point(1000 + i, i + 1, 0.1, 0.05, 0.2) for i in range(5)]
    for svg in (
        line_chart({arm: pts, "control": pts[:2]}, label),
        interval_bars([(label, 0.1, 0.05, 0.2), (arm, math.nan, math.nan, math.nan)], label),
    ):
        ET.fromstring(str(svg))  # parses: nothing unescaped breaks out


def test_the_last_point_of_each_arm_is_the_reports_rate() -> None:
    data = rewards(2000, seed=3)
    series = ctr_series(data)
    report = build_report("c", data)
    for row in report.arms:
        last = series.arms[row.arm][-1]
        assert last.n == row.outcomes
        assert math.isclose(last.rate, row.rewarded.rate)
        assert math.isclose(last.low, row.rewarded.low) and math.isclose(
            last.high, row.rewarded.high
        )
    ns = [p.n for p in series.arms["optimized"]]
    assert ns == sorted(ns) and ns[0] < ns[-1]  # cumulative over time


def test_regret_counts_shown_requests_only() -> None:
    rows = [
        {"arm": "control", "expected_reward": 0.1, "oracle_reward": 0.3, "shown": True},
        {"arm": "control", "expected_reward": 0.2, "oracle_reward": 0.3, "shown": True},
        {"arm": "control", "expected_reward": 0.0, "oracle_reward": 0.9, "shown": False},
        {"arm": "optimized", "expected_reward": 0.3, "oracle_reward": 0.3},
    ]
    got = regret_by_arm(rows)
    assert got["control"]["n"] == 2
    assert math.isclose(got["control"]["regret_per_impression"], 0.15)
    assert got["optimized"]["regret_per_impression"] == 0


def test_dead_letter_samples_mask_identities() -> None:
    raw = '{"user_id": "alice@example.com", "userId":"bob", "note": "redacted-Ab3_x9 ok"}'
    masked = mask_identities(raw)
    assert "alice" not in masked and "bob" not in masked and "Ab3_x9" not in masked
    assert '"note"' in masked and "•••" in masked
