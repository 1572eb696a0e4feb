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
    return _state(registry, tmp_path)


def _state(registry: SchemaRegistry, tmp_path: Path, **overrides: object) -> TrainerState:
    values: dict[str, object] = {
        "retrain_min_new_positives": 10,
        "retrain_positive_growth": 0.5,
        "retrain_floor_rewards": 100,
        "retrain_floor_min_s": 5,
        "retrain_shift_min_impressions": 40,
        "retrain_every_minutes": 10,
        "min_rows": 50,
        "min_positives": 2,
        "buffer_path": tmp_path / "b.json.gz",
        **overrides,
    }
    settings = Settings(**values)  # type: ignore[arg-type]
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


def _feed_clicks(
    state: TrainerState, registry: SchemaRegistry, n: int, ctr: float, start: int,
    creative: str | None = None,
) -> None:  # fmt: skip
    """`n` rewards with every ``1/ctr``-th one a click (all on `creative` when given)."""
    codec = registry.codec("Reward")
    catalog = synthetic_catalog(n=4)
    every = round(1 / ctr) if ctr > 0 else 0
    for i, r in enumerate(synthetic_rewards(catalog, n, seed=start)):
        r["reward"] = float(every > 0 and i % every == 0)
        if creative:
            r["creative_id"] = creative
        state.apply(_msg(TOPICS.rewards.name, codec.encode(r), offset=start + i))


def _with_campaign(state: TrainerState, registry: SchemaRegistry) -> None:
    state.apply(
        _msg(TOPICS.campaigns.name, registry.codec("Campaign").encode(synthetic_campaign()))
    )


def test_many_new_zeros_are_no_reason_to_retrain_but_new_positives_are(
    registry: SchemaRegistry, tmp_path: Path
) -> None:
    # zeros after a 10 % CTR are a shift (its own test); here only positives count
    state = _state(registry, tmp_path, retrain_shift_min_impressions=10**6)
    _with_campaign(state, registry)
    _feed_clicks(state, registry, 200, 0.1, start=0)  # 20 positives
    assert state.due(now=0.0) == []  # the floor: the clock starts with the first reward
    assert state.due(now=6.0) == ["spring"] and state.reasons["spring"] == "positives"
    state.mark_trained("spring", 6.0)
    _feed_clicks(state, registry, 2000, 0.0, start=1000)  # 2000 rewards, not one click
    assert state.due(now=20.0) == []
    assert state.due(now=500.0) == []  # not even after a long while: nothing new to learn
    _feed_clicks(state, registry, 50, 0.1, start=5000)  # 5 positives: < max(10, 0.5 · 20)
    assert state.due(now=600.0) == []
    _feed_clicks(state, registry, 60, 0.1, start=6000)  # 11 positives in all
    assert state.due(now=601.0) == ["spring"] and state.reasons["spring"] == "positives"


def test_versions_get_sparser_as_positives_grow(
    state: TrainerState, registry: SchemaRegistry
) -> None:
    _with_campaign(state, registry)
    _feed_clicks(state, registry, 1000, 0.1, start=0)  # 100 positives
    state.mark_trained("spring", 0.0)
    _feed_clicks(state, registry, 400, 0.1, start=2000)  # 40 new: < 0.5 · 100
    assert state.due(now=100.0) == []
    _feed_clicks(state, registry, 100, 0.1, start=3000)  # 50 new: = 0.5 · 100
    assert state.due(now=100.0) == ["spring"]


def test_the_floor_follows_the_traffic(state: TrainerState, registry: SchemaRegistry) -> None:
    _with_campaign(state, registry)
    _feed_clicks(state, registry, 200, 0.5, start=0)
    state.mark_trained("spring", 0.0)
    _feed_clicks(state, registry, 50, 0.5, start=1000)  # 25 positives in 10 s: 5 rewards/s
    assert state.floor_s("spring", 10.0) == pytest.approx(100 / 5)  # 100 rewards take 20 s
    assert state.due(now=10.0) == []
    _feed_clicks(state, registry, 450, 0.5, start=2000)  # 500 rewards in 10 s: 50/s
    assert state.floor_s("spring", 10.0) == pytest.approx(5.0)  # the minimum
    assert state.due(now=10.0) == ["spring"]
    assert state.floor_s("spring", 10_000.0) == 600.0  # never more than retrain_every_minutes


def test_a_shifted_ctr_or_an_unseen_creative_triggers_a_retrain(
    state: TrainerState, registry: SchemaRegistry
) -> None:
    _with_campaign(state, registry)
    _feed_clicks(state, registry, 400, 0.05, start=0, creative="spring-cat-01")
    state.mark_trained("spring", 0.0)
    _feed_clicks(state, registry, 100, 0.05, start=1000, creative="spring-cat-01")  # same CTR
    assert state.due(now=100.0) == []
    _feed_clicks(state, registry, 90, 0.0, start=2000, creative="spring-cat-02")
    assert state.due(now=100.0) == ["spring"]  # the last model never saw spring-cat-02
    assert state.reasons["spring"] == "shift"
    state.mark_trained("spring", 100.0)
    _feed_clicks(state, registry, 300, 0.0, start=3000, creative="spring-cat-01")  # 5 % → 0 %
    assert state.due(now=200.0) == ["spring"] and state.reasons["spring"] == "shift"


def test_a_stale_model_or_the_clock_triggers_a_retrain(
    state: TrainerState, registry: SchemaRegistry
) -> None:
    _with_campaign(state, registry)
    _feed_clicks(state, registry, 400, 0.05, start=0)
    state.mark_trained("spring", 0.0)
    _feed_clicks(state, registry, 20, 0.05, start=1000)
    assert state.due(now=100.0) == []
    state.mark_stale("spring")
    assert state.due(now=100.0) == []  # the floor: 100 rewards take 500 s at 0.2/s
    assert state.due(now=550.0) == []  # ... and at 20 in 550 s, 10 minutes (the most)
    assert state.due(now=650.0) == ["spring"] and state.reasons["spring"] == "error"
    state.mark_trained("spring", 650.0)
    assert "spring" not in state.stale and state.since_trained("spring") == []
    _feed_clicks(state, registry, 20, 0.05, start=2000)  # one positive
    assert len(state.since_trained("spring")) == 20
    assert state.due(now=1249.0) == []
    assert state.due(now=1251.0) == ["spring"] and state.reasons["spring"] == "time"


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


def test_a_paused_or_stopped_campaign_is_not_retrained(
    registry: SchemaRegistry, tmp_path: Path
) -> None:
    state = _state(registry, tmp_path, retrain_shift_min_impressions=10**6)
    codec = registry.codec("Campaign")
    _with_campaign(state, registry)
    _feed_clicks(state, registry, 200, 0.1, start=0)
    assert state.due(now=0.0) == []
    for lifecycle in ("paused", "stopped"):
        paused = synthetic_campaign() | {"state": lifecycle}
        state.apply(_msg(TOPICS.campaigns.name, codec.encode(paused)))
        assert state.due(now=6.0) == [], lifecycle  # the rewards wait in the buffer
    _with_campaign(state, registry)  # resumed
    assert state.due(now=6.0) == ["spring"]
