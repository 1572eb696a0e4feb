"""Retraining on information: the last model's error on new rewards, and an unchanged model is
not published again."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from services.common.codec import SchemaRegistry
from services.common.model_store import ModelStore
from services.common.signing import Signer, generate_key_pair
from services.common.topics import Topics
from services.trainer.app import _Publish, _train_and_publish
from services.trainer.buffer import RewardRow, TrainingBuffer
from services.trainer.freshness import prequential_logloss
from services.trainer.metrics import Metrics
from services.trainer.settings import Settings
from services.trainer.state import TrainerState
from services.trainer.synthetic import synthetic_rewards
from tests.unit.trainer.conftest import Trained


def _rows(records: list[dict[str, Any]]) -> list[RewardRow]:
    return [RewardRow.from_record(r) for r in records]


def test_new_rewards_like_the_old_keep_the_error_and_a_changed_world_raises_it(
    trained: Trained,
) -> None:
    creatives = {c["creative_id"]: c for c in trained.catalog}
    held_out = trained.built.metrics["reward_logloss"]
    fresh = synthetic_rewards(trained.catalog, 3000, trained.truth, seed=99)
    same = prequential_logloss(trained.built, trained.campaign, creatives, _rows(fresh))
    assert same is not None and same[0] - 2 * same[1] < held_out * 1.1
    assert 0 < same[1] < 0.1 * same[0]
    # the world changed: what was clicked is not any more, and the other way round
    flipped = [{**r, "reward": 1.0 - r["reward"]} for r in fresh]
    moved = prequential_logloss(trained.built, trained.campaign, creatives, _rows(flipped))
    assert moved is not None and moved[0] - 2 * moved[1] > held_out * 1.1
    assert prequential_logloss(trained.built, trained.campaign, creatives, _rows(fresh[:50])) is (
        None
    )  # too few to say


class _Producer:
    """Collects what would be sent (the no-op is decided before any Kafka call)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    async def send(self, topic: str, value: bytes, key: bytes) -> None:
        self.sent.append((topic, value))


def test_retraining_on_the_same_data_publishes_nothing_new(
    trained: Trained, tmp_path: Path
) -> None:
    registry = SchemaRegistry.load()
    topics = Topics.with_prefix("t.")
    settings = Settings(buffer_path=tmp_path / "b.json.gz", profile="small", gan_steps=20)  # type: ignore[call-arg]
    state = TrainerState(settings, registry, topics, TrainingBuffer(100_000, 10**13))
    state.campaigns["spring"] = trained.campaign
    state.creatives.update({c["creative_id"]: c for c in trained.catalog})
    for row in _rows(trained.rewards[:3000]):
        state.buffer.add("spring", row)
    store = ModelStore(f"file://{tmp_path}/store")
    producer = _Producer()
    metrics = Metrics()
    target = _Publish(store, Signer(generate_key_pair()[0]), producer,
                      registry.codec("ModelPublished"), metrics)  # fmt: skip

    def publish() -> None:
        asyncio.run(_train_and_publish(state, "spring", None, target))

    publish()
    assert len(producer.sent) == 1
    publish()  # same rows, same seed: the same networks
    assert len(producer.sent) == 1
    labels = {"campaign_id": "spring", "reason": "unchanged"}
    assert (
        metrics.registry.get_sample_value("admuse_trainer_models_not_published_total", labels) == 1
    )
    for row in _rows(trained.rewards[3000:3600]):
        state.buffer.add("spring", row)
    publish()
    assert len(producer.sent) == 2
