"""Every reader of admuse.rewards counts one Reward per decision, however often it was sent.

Features sends a Reward again when it re-processes the message that produced it after a crash
(at-least-once), always the same record (tests/integration/test_rewards_watermarks.py checks
copies are identical). The trainer's buffer, the analysis dataset and the report built from it
must therefore give the same result with any number of copies in any order.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from services.analysis.kafka_io import rewards_to_data
from services.analysis.report import build_report
from services.trainer.buffer import RewardRow, TrainingBuffer

T0 = 1_800_000_000_000


def _reward(i: int, clicked: bool) -> dict:
    return {
        "decision_id": f"d{i}",
        "decided_at": T0 + i,
        "campaign_id": "c",
        "segment": "tier=gold" if i % 2 else "*",
        "context": {},
        "user_id": "u",
        "creative_id": f"cr{i % 3}",
        "propensity": 0.5,
        "arm": "control" if i % 4 == 0 else "optimized",
        "policy": "thompson",
        "policy_version": "v1",
        "model_version": None,
        "reward": 1.0 if clicked else 0.0,
        "clicked": clicked,
        "converted": False,
        "conversion_value": 0.0,
        "sentiment": None,
        "outcome": "click" if clicked else "timeout",
        "event_at": None,
        "rewarded_at": T0 + 10_000 + i,
    }


@settings(max_examples=50, deadline=None)
@given(
    clicks=st.lists(st.booleans(), min_size=1, max_size=40),
    copies=st.lists(st.integers(1, 4), min_size=40, max_size=40),
    seed=st.integers(0, 2**32),
)
def test_duplicates_change_nothing_for_any_reader(
    clicks: list[bool], copies: list[int], seed: int
) -> None:
    once = [_reward(i, c) for i, c in enumerate(clicks)]
    sent = [r for r, k in zip(once, copies, strict=False) for _ in range(k)]
    random.Random(seed).shuffle(sent)

    data_once, data_sent = rewards_to_data(once), rewards_to_data(sent)
    assert data_sent.n == data_once.n == len(clicks)
    assert sorted(data_sent.reward.tolist()) == sorted(data_once.reward.tolist())

    rep_once = build_report("c", data_once).to_dict()
    rep_sent = build_report("c", data_sent).to_dict()
    for key in ("arms", "comparisons"):
        assert rep_sent[key] == rep_once[key]

    buffer = TrainingBuffer(max_rows=1000, max_age_ms=10**12)
    added = [buffer.add("c", RewardRow.from_record(r)) for r in sent]
    assert sum(added) == len(clicks)
