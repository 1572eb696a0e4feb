"""A small model trained once per session on the synthetic campaign (test-size config)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from services.trainer.buffer import RewardRow
from services.trainer.pipeline import BuiltModel, build_model
from services.trainer.synthetic import (
    SyntheticTruth,
    synthetic_campaign,
    synthetic_catalog,
    synthetic_rewards,
)
from services.trainer.train import TrainConfig


@dataclass
class Trained:
    campaign: dict[str, Any]
    catalog: list[dict[str, Any]]
    truth: SyntheticTruth
    rewards: list[dict[str, Any]]
    built: BuiltModel


@pytest.fixture(scope="session")
def trained() -> Trained:
    campaign, catalog, truth = synthetic_campaign(), synthetic_catalog(), SyntheticTruth()
    rewards = synthetic_rewards(catalog, 12000, truth)
    rows = [RewardRow.from_record(r) for r in rewards]
    built = build_model(
        campaign, {c["creative_id"]: c for c in catalog}, rows, TrainConfig.small(), seed=7
    )
    return Trained(campaign, catalog, truth, rewards, built)
