"""The review rules for creatives: approve, block, retire, pin, unpin."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.codec import SchemaRegistry
from services.common.review import (
    REVIEW_ACTIONS,
    ReviewError,
    awaiting_review,
    check_segment,
    needs_approval,
    pin_applies,
    reviewed,
)

NOW = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)


def _creative(status: str = "live", segment: str | None = None, **kw: Any) -> dict[str, Any]:
    return {"creative_id": "g1", "campaign_id": "spring", "origin": "generated",
            "attributes": {"headline": "x"}, "status": status, "stage": "challenger",
            "segment": segment, "created_at": NOW, "retired_at": None, "pinned": None,
            "approved_at": None, "reviewed_by": None, **kw}  # fmt: skip


def _act(c: dict[str, Any], action: str, segment: str | None = None) -> dict[str, Any]:
    return reviewed(c, action, by="ana", now=NOW, segment=segment)


def test_approve_makes_a_pending_creative_live_and_starts_its_clock() -> None:
    out = _act(_creative("pending"), "approve")
    assert out["status"] == "live" and out["approved_at"] == NOW and out["reviewed_by"] == "ana"
    assert out["stage"] == "challenger"  # judged in the challenger slice like any other
    assert _act(out, "approve") == out  # already live: nothing to write


@pytest.mark.parametrize("status", ["pending", "live", "retired"])
def test_block_is_final(status: str) -> None:
    blocked = _act(_creative(status, pinned="*"), "block")
    assert blocked["status"] == "blocked" and blocked["pinned"] is None
    assert blocked["retired_at"] is not None
    for action in ("block", "retire", "unpin"):
        assert _act(blocked, action) == blocked
    for action in ("approve", "pin"):
        with pytest.raises(ReviewError) as err:
            _act(blocked, action)
        assert err.value.reason == "blocked" and "final" in str(err.value)


def test_retire_stops_a_live_or_pending_creative_and_clears_its_pin() -> None:
    out = _act(_creative("live", pinned="*"), "retire")
    assert out["status"] == "retired" and out["pinned"] is None and out["retired_at"] == NOW
    assert _act(_creative("pending"), "retire")["status"] == "retired"
    with pytest.raises(ReviewError) as err:
        _act(out, "approve")
    assert err.value.reason == "not_pending"


def test_pin_scope() -> None:
    wide = _creative("live")
    assert _act(wide, "pin")["pinned"] == "*"
    assert _act(wide, "pin", "country=DE")["pinned"] == "country=DE"
    own = _creative("live", segment="country=DE")
    assert _act(own, "pin")["pinned"] == "country=DE"
    with pytest.raises(ReviewError) as err:
        _act(own, "pin", "country=FR")
    assert err.value.reason == "bad_segment" and "'country=DE'" in str(err.value)
    with pytest.raises(ReviewError) as err:
        _act(_creative("pending"), "pin")
    assert err.value.reason == "not_live" and "approve it first" in str(err.value)
    assert _act(_act(wide, "pin"), "unpin")["pinned"] is None


def test_which_requests_a_pin_holds_for() -> None:
    every = _creative("live", pinned="*")
    assert pin_applies(every, "country=DE") and pin_applies(every, "*")
    de = _creative("live", pinned="country=DE")
    assert pin_applies(de, "country=DE") and not pin_applies(de, "country=FR")
    own = _creative("live", segment="country=DE", pinned="country=DE")
    assert not pin_applies(own, "country=FR")
    assert not pin_applies(_creative("retired", pinned="*"), "country=DE")
    assert not pin_applies(_creative("live"), "country=DE")


def test_the_queue_and_the_campaign_mode() -> None:
    old = _creative("pending", creative_id="old", created_at=datetime(2026, 1, 1, tzinfo=UTC))
    queue = awaiting_review([_creative("pending"), _creative("live", creative_id="x"), old])
    assert [c["creative_id"] for c in queue] == ["old", "g1"]
    assert not needs_approval({}) and not needs_approval({"approval": "auto"})
    assert needs_approval({"approval": "required"})


def test_unknown_action_is_named() -> None:
    with pytest.raises(ReviewError) as err:
        _act(_creative(), "promote")
    assert err.value.reason == "unknown_action" and "'promote'" in str(err.value)


@settings(max_examples=200, deadline=None)
@given(
    start=st.sampled_from(["pending", "live", "retired", "blocked"]),
    steps=st.lists(
        st.tuples(st.sampled_from(REVIEW_ACTIONS), st.sampled_from([None, "*", "country=DE"])),
        max_size=12,
    ),
)
def test_any_sequence_keeps_the_invariants(start: str, steps: list[tuple[str, Any]]) -> None:
    """Whatever people click: a blocked creative stays blocked, only live ones are pinned,
    and every record still encodes as a Creative."""
    codec = SchemaRegistry.load().codec("Creative")
    c = _creative(start)
    was_blocked = start == "blocked"
    for action, segment in steps:
        try:
            c = _act(c, action, segment)
        except ReviewError as exc:
            assert exc.reason in ("blocked", "not_pending", "not_live", "bad_segment")
        was_blocked = was_blocked or c["status"] == "blocked"
        assert c["status"] == "blocked" if was_blocked else c["status"] != "blocked"
        assert c["pinned"] is None or c["status"] == "live"
        codec.encode(c)


def test_a_pin_segment_must_be_one_requests_can_have() -> None:
    keys = ["device", "country"]
    assert check_segment("country=DE|device=mobile", keys) == "country=DE|device=mobile"
    assert check_segment("country=*|device=mobile", keys) == "country=*|device=mobile"
    assert check_segment("*", keys) == "*"
    for bad in ("country=DE", "device=mobile|country=DE", "country=DE|device=mobile|x=1",
                "nonsense", "country=DE|device", "country=DE\n|device=m"):  # fmt: skip
        with pytest.raises(ReviewError) as err:
            check_segment(bad, keys)
        assert err.value.reason == "bad_segment" and "country=…|device=…" in str(err.value)
    with pytest.raises(ReviewError):
        _act_keys(_creative("live"), "country=DE", keys)


def _act_keys(c: dict[str, Any], segment: str, keys: list[str]) -> dict[str, Any]:
    return reviewed(c, "pin", by="ana", now=NOW, segment=segment, segment_keys=keys)


@settings(max_examples=300, deadline=None)
@given(segment=st.text(max_size=60), keys=st.lists(st.sampled_from(["a", "b", "c"]), unique=True))
def test_garbage_pin_segments_are_refused_or_canonical(segment: str, keys: list[str]) -> None:
    from services.common.segment import parse_segment, segment_of

    try:
        out = _act_keys(_creative("live"), segment, keys)
    except ReviewError as exc:
        assert exc.reason == "bad_segment", exc
        return
    assert out["pinned"] == segment
    assert segment == "*" or segment_of(keys, parse_segment(segment)) == segment
