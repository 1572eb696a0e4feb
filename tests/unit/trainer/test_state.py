"""What the service does with each record and when it decides to retrain (no broker)."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiokafka.structs import ConsumerRecord

from services.common.codec import SchemaRegistry
from services.common.topics import Topics
from services.trainer.buffer import TrainingBuffer
from services.trainer.settings import Settings
from services.trainer.state import TrainerState
from services.trainer.synthetic import synthetic_campaign, synthetic_catalog, synthetic_rewards

TOPICS = Topics.with_prefix("t.")


def _msg(topic: str, value: bytes | None, offset: int = 0, key: bytes = b"k") -> ConsumerRecord:
    return ConsumerRecord(
        topic=topic,
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=len(key),
        serialized_value_size=0,
        headers=(),
    )


@pytest.fixture
def state(registry: SchemaRegistry, tmp_path: Path) -> TrainerState:
    settings = Settings(
        retrain_every_rewards=100,
        retrain_every_minutes=10,
        min_rows=50,
        min_positives=2,
        buffer_path=tmp_path / "b.json.gz",
    )
    return TrainerState(settings, registry, TOPICS, TrainingBuffer(1000, 10**12))


def _feed(state: TrainerState, registry: SchemaRegistry, n: int, start: int = 0) -> None:
    codec = registry.codec("Reward")
    catalog = synthetic_catalog(n=4)
    for i, r in enumerate(synthetic_rewards(catalog, n, seed=start)):
        r["reward"] = r["reward"] or float(i % 5 == 0)
        state.apply(_msg(TOPICS.rewards.name, codec.encode(r), offset=start + i))


def test_records_build_the_state(state: TrainerState, registry: SchemaRegistry) -> None:
    state.apply(
        _msg(TOPICS.campaigns.name, registry.codec("Campaign").encode(synthetic_campaign()))
    )
    for c in synthetic_catalog(n=4):
        state.apply(_msg(TOPICS.creatives.name, registry.codec("Creative").encode(c)))
    _feed(state, registry, 60)
    assert set(state.campaigns) == {"spring"} and len(state.creatives) == 4
    assert len(state.buffer.rows("spring")) == 60
    assert state.buffer.offsets == {TOPICS.rewards.name: {0: 60}}
    # a tombstone forgets a creative
    state.apply(_msg(TOPICS.creatives.name, None, key=b"spring-cat-00"))
    assert "spring-cat-00" not in state.creatives


def test_bad_records_are_skipped_and_counted(state: TrainerState, registry: SchemaRegistry) -> None:
    state.apply(_msg(TOPICS.rewards.name, b"{not avro}", offset=7))
    bad_space = synthetic_campaign() | {
        "attributes": [{"name": "x", "kind": "shape", "values": [], "min": None, "max": None}]
    }
    state.apply(_msg(TOPICS.campaigns.name, registry.codec("Campaign").encode(bad_space)))
    wrong = registry.codec("Campaign").encode(synthetic_campaign())
    state.apply(_msg(TOPICS.rewards.name, wrong, offset=8))
    assert state.campaigns == {} and len(state.buffer) == 0
    assert sum(state.rejected.values()) == 3
    assert state.buffer.offsets[TOPICS.rewards.name][0] == 9  # skipped, not re-read


def test_retrain_trigger_by_count_and_by_time(
    state: TrainerState, registry: SchemaRegistry
) -> None:
    state.apply(
        _msg(TOPICS.campaigns.name, registry.codec("Campaign").encode(synthetic_campaign()))
    )
    _feed(state, registry, 60)
    assert state.due(now=0.0) == []  # 60 new < 100, and the clock starts now
    assert state.due(now=599.0) == []
    assert state.due(now=601.0) == ["spring"]  # 10 minutes with new rewards
    state.new_rewards["spring"] = 0
    state.last_trained["spring"] = 601.0
    _feed(state, registry, 100, start=1000)
    assert state.due(now=602.0) == ["spring"]  # 100 new rewards


def test_replayed_rewards_do_not_count_as_new(
    state: TrainerState, registry: SchemaRegistry
) -> None:
    _feed(state, registry, 30)
    _feed(state, registry, 30)
    assert state.new_rewards["spring"] == 30


def test_not_enough_data_never_triggers(state: TrainerState, registry: SchemaRegistry) -> None:
    state.apply(
        _msg(TOPICS.campaigns.name, registry.codec("Campaign").encode(synthetic_campaign()))
    )
    _feed(state, registry, 20)  # below min_rows
    assert state.due(now=0.0) == [] and state.due(now=10**6) == []


def test_rewards_of_decisions_never_shown_make_no_training_row(
    state: TrainerState, registry: SchemaRegistry
) -> None:
    codec = registry.codec("Reward")
    rows = synthetic_rewards(synthetic_catalog(n=4), 10, seed=3)
    for i, r in enumerate(rows):
        state.apply(_msg(TOPICS.rewards.name, codec.encode({**r, "shown": i % 2 == 0}), i))
    assert len(state.buffer.rows("spring")) == 5
    assert state.unshown == {"spring": 5} and not state.rejected
    assert state.buffer.offsets == {TOPICS.rewards.name: {0: 10}}  # read past, not lost
