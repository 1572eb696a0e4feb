"""The campaign lifecycle: its moves, old records, and the spec fields that go with it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.campaign import SpecError, campaign_record, parse_spec
from services.common.codec import SchemaRegistry
from services.common.lifecycle import (
    ACTIVE,
    PAUSED,
    STOPPED,
    LifecycleError,
    campaign_state,
    is_serving,
    next_state,
)
from tests.unit.common.test_campaign import SPEC, spec_with


@pytest.mark.parametrize(
    ("current", "action", "after"),
    [
        (ACTIVE, "pause", PAUSED),
        (PAUSED, "resume", ACTIVE),
        (ACTIVE, "stop", STOPPED),
        (PAUSED, "stop", STOPPED),
        (PAUSED, "pause", PAUSED),  # already there: no change
        (ACTIVE, "resume", ACTIVE),
        (STOPPED, "stop", STOPPED),
    ],
)
def test_moves(current: str, action: str, after: str) -> None:
    assert next_state("spring", current, action) == after


@pytest.mark.parametrize("action", ["pause", "resume"])
def test_stop_is_final(action: str) -> None:
    with pytest.raises(LifecycleError) as err:
        next_state("spring", STOPPED, action)
    assert err.value.reason == "stopped"
    assert "'spring' is stopped" in str(err.value) and "new campaign_id" in str(err.value)


def test_unknown_action_is_named() -> None:
    with pytest.raises(LifecycleError) as err:
        next_state("spring", ACTIVE, "archive")
    assert err.value.reason == "unknown_action" and "'archive'" in str(err.value)


def test_only_an_active_campaign_serves() -> None:
    assert is_serving({}) and is_serving({"state": ACTIVE})
    assert not is_serving({"state": PAUSED}) and not is_serving({"state": STOPPED})
    assert campaign_state({"state": "archived"}) == PAUSED  # unknown: the careful reading


def test_campaigns_written_before_v4_read_as_active_auto_without_fallback(
    registry: SchemaRegistry,
) -> None:
    record = campaign_record(parse_spec(SPEC), revision=2)
    for version in (1, 2, 3):
        old = registry.codec("Campaign", version).encode(record)
        got = registry.codec("Campaign").decode(old)
        assert got["state"] == ACTIVE and got["approval"] == "auto", version
        assert got["fallback_creative_id"] is None and got["state_changed_at"] is None


def test_an_unknown_future_state_reads_as_paused(registry: SchemaRegistry, tmp_path: Path) -> None:
    """A newer writer's state this reader does not know resolves to the enum's default,
    `paused`: the careful reading (no experiment) rather than `active`."""
    for path in Path(registry.get("Campaign").path).parent.glob("*.avsc"):
        (tmp_path / path.name).write_text(path.read_text())
    newer = json.loads(registry.get("Campaign").path.read_text())
    state = next(f for f in newer["fields"] if f["name"] == "state")
    state["type"]["symbols"].append("archived")
    (tmp_path / "Campaign.v99.avsc").write_text(json.dumps(newer))
    record = {**campaign_record(parse_spec(SPEC), revision=1), "state": "archived"}
    both = SchemaRegistry.load(tmp_path)  # a v4 reader that knows the newer writer schema
    data = both.codec("Campaign", 99).encode(record)
    assert both.codec("Campaign", 4).decode(data)["state"] == PAUSED


def test_spec_approval_and_fallback_reach_the_record(registry: SchemaRegistry) -> None:
    spec = parse_spec(spec_with(approval="required", fallback="spring-classic"))
    codec = registry.codec("Campaign")
    got = codec.decode(codec.encode(campaign_record(spec, revision=1)))
    assert got["approval"] == "required" and got["fallback_creative_id"] == "spring-classic"
    assert got["state"] == ACTIVE
    default = codec.decode(codec.encode(campaign_record(parse_spec(SPEC), revision=1)))
    assert default["approval"] == "auto" and default["fallback_creative_id"] is None


def test_fallback_must_be_a_seed() -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(spec_with(fallback="soft-2"), "spring.yaml")
    assert "fallback" in str(err.value) and "'soft-1'" in str(err.value)


_garbage = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=80),
    st.lists(st.text(max_size=5), max_size=3), st.dictionaries(st.text(max_size=5), st.integers()),
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(approval=_garbage, fallback=_garbage)
def test_garbage_approval_and_fallback_get_a_named_error_or_a_valid_record(
    approval: Any, fallback: Any
) -> None:
    try:
        spec = parse_spec(spec_with(approval=approval, fallback=fallback), "spring.yaml")
    except SpecError as exc:
        assert "approval" in str(exc) or "fallback" in str(exc), str(exc)
        return
    assert spec.approval in ("auto", "required")
    assert spec.fallback in (None, "spring-classic", "soft-1")
    registry = SchemaRegistry.load()
    registry.codec("Campaign").encode(campaign_record(spec, revision=1))
