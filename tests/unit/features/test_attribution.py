"""The attribution state machine for one decision, without a broker."""

from __future__ import annotations

from typing import Any

import pytest

from services.features.attribution import (
    MAX_HELD,
    RewardRule,
    apply_event,
    close_due,
    hold_event,
    open_decision,
)

T0 = 1_800_000_000_000
WINDOW = 2000
KW = {"now_ms": T0, "retention_ms": 60_000}


def decision(**over: Any) -> dict[str, Any]:
    return {
        "decision_id": "d1",
        "decided_at": T0,
        "campaign_id": "c",
        "segment": "country=DE",
        "context": {"country": "DE"},
        "user_id": "u1",
        "creative_id": "cr1",
        "propensity": 0.25,
        "arm": "optimized",
        "policy": "thompson",
        "policy_version": "p7",
        "model_version": "m3",
        "attribution_window_ms": WINDOW,
        "candidates": 4,
        **over,
    }


def ev(kind: str = "click", eid: str = "e1", at: int = T0 + 500, **over: Any) -> dict[str, Any]:
    return {
        "event_id": eid,
        "type": kind,
        "occurred_at": at,
        "value": None,
        "sentiment": None,
        **over,
    }


def opened(spec: RewardRule | None = None, held: Any = None) -> tuple[dict, Any, list]:
    return open_decision(
        decision(),
        held,
        spec or RewardRule(),
        partition=0,
        now_ms=T0,
        default_window_ms=99_000,
        retention_ms=60_000,
    )


def test_click_inside_window_settles_at_once_with_everything_learning_needs() -> None:
    state, _, _ = opened()
    step = apply_event(state, ev(), RewardRule(), **KW)
    assert step.verdict == "settled"
    r = step.reward
    assert r["reward"] == 1.0 and r["clicked"] and r["outcome"] == "click"
    assert r["event_at"] == T0 + 500 and r["decided_at"] == T0
    assert (r["propensity"], r["policy_version"], r["model_version"], r["arm"]) == (
        0.25,
        "p7",
        "m3",
        "optimized",
    )
    assert r["context"] == {"country": "DE"} and r["segment"] == "country=DE"
    assert step.state["status"] == "done"


def test_window_closes_with_reward_zero_only_after_deadline_and_grace() -> None:
    state, _, _ = opened()
    assert (
        close_due(state, RewardRule(), now_ms=T0 + WINDOW + 999, grace_ms=1000, retention_ms=1)
        is None
    )
    step = close_due(state, RewardRule(), now_ms=T0 + WINDOW + 1000, grace_ms=1000, retention_ms=1)
    assert step is not None and step.reward["reward"] == 0.0
    assert step.reward["outcome"] == "timeout" and not step.reward["clicked"]


def test_event_before_decision_is_held_then_joined() -> None:
    held = hold_event(None, ev(), user_id="u1", partition=0, now_ms=T0, max_hold_ms=10_000)
    assert held.verdict == "held"
    state, reward, verdicts = opened(held=held.state)
    assert verdicts == ["settled"] and reward["reward"] == 1.0
    assert state["status"] == "done"


def test_held_duplicates_and_overflow_are_not_kept_twice() -> None:
    step = hold_event(None, ev(), user_id="u1", partition=0, now_ms=T0, max_hold_ms=1)
    assert (
        hold_event(step.state, ev(), user_id="u1", partition=0, now_ms=T0, max_hold_ms=1).verdict
        == "duplicate"
    )
    held = step.state
    for i in range(MAX_HELD - 1):
        held = hold_event(
            held, ev(eid=f"x{i}"), user_id="u1", partition=0, now_ms=T0, max_hold_ms=1
        ).state
    assert (
        hold_event(
            held, ev(eid="last"), user_id="u1", partition=0, now_ms=T0, max_hold_ms=1
        ).verdict
        == "overflow"
    )


def test_click_after_window_is_late_and_changes_no_reward() -> None:
    state, _, _ = opened()
    closed = close_due(state, RewardRule(), now_ms=T0 + 5000, grace_ms=0, retention_ms=1).state
    step = apply_event(closed, ev(at=T0 + 4000), RewardRule(), **KW)
    assert step.verdict == "late" and step.reward is None and step.state["late"] == 1
    # occurred after the window but arrived while still pending: late as well
    step = apply_event(state, ev(at=T0 + WINDOW + 1), RewardRule(), **KW)
    assert step.verdict == "late" and step.state["status"] == "pending"


def test_duplicate_click_gives_one_reward() -> None:
    state, _, _ = opened()
    first = apply_event(state, ev(), RewardRule(), **KW)
    again = apply_event(first.state, ev(), RewardRule(), **KW)
    other = apply_event(first.state, ev(eid="e2"), RewardRule(), **KW)
    assert first.reward is not None
    assert again.verdict == "duplicate" and again.reward is None
    # a second click inside the window: the reward is final, but nothing about it is late
    assert other.verdict == "after_settled" and other.reward is None
    assert other.state["late"] == 0


def test_impression_behind_its_click_is_not_late_and_changes_no_reward() -> None:
    spec = RewardRule(impressions="event")
    state, _, _ = opened(spec)
    click = apply_event(state, ev(at=T0 + 10), spec, **KW)
    assert click.reward is not None and click.reward["shown"] is True
    imp = apply_event(click.state, ev("impression", "i1", at=T0 + 5), spec, **KW)
    assert imp.verdict == "after_settled" and imp.reward is None and imp.state["late"] == 0
    # after a timeout the same impression is late
    closed = close_due(state, spec, now_ms=T0 + WINDOW + 1, grace_ms=0, retention_ms=1).state
    assert apply_event(closed, ev("impression", "i1", at=T0 + 5), spec, **KW).verdict == "late"


def test_conversion_campaign_waits_for_the_conversion() -> None:
    spec = RewardRule(kind="conversion")
    state, _, _ = opened(spec)
    click = apply_event(state, ev(), spec, **KW)
    assert click.verdict == "attributed" and click.reward is None
    conv = apply_event(click.state, ev("conversion", "e2", value=30.0), spec, **KW)
    assert conv.reward["reward"] == 1.0 and conv.reward["clicked"] and conv.reward["converted"]
    assert conv.reward["conversion_value"] == 30.0 and conv.reward["outcome"] == "conversion"


def test_weighted_reward_sums_click_conversion_value_and_sentiment() -> None:
    spec = RewardRule(
        kind="weighted",
        click_weight=1.0,
        conversion_weight=2.0,
        value_weight=0.01,
        sentiment_weight=0.5,
    )
    state, _, _ = opened(spec)
    s = apply_event(state, ev(), spec, **KW).state
    s = apply_event(s, ev("comment", "e2", sentiment=0.8), spec, **KW).state
    step = apply_event(s, ev("conversion", "e3", value=50.0), spec, **KW)
    assert step.reward["reward"] == pytest.approx(1.0 + 2.0 + 0.5 + 0.4)
    assert step.reward["sentiment"] == pytest.approx(0.8)


def test_weighted_without_conversion_settles_at_close_with_what_it_has() -> None:
    spec = RewardRule(kind="weighted", click_weight=1.0, value_weight=0.1)
    state, _, _ = opened(spec)
    clicked = apply_event(state, ev(), spec, **KW)
    assert clicked.reward is None
    step = close_due(clicked.state, spec, now_ms=T0 + 10_000, grace_ms=0, retention_ms=1)
    assert step.reward["reward"] == 1.0 and step.reward["outcome"] == "timeout"


def test_pure_click_weighted_settles_on_click() -> None:
    spec = RewardRule(kind="weighted", click_weight=2.0)
    state, _, _ = opened(spec)
    assert apply_event(state, ev(), spec, **KW).reward["reward"] == 2.0


def test_non_joinable_events_are_ignored() -> None:
    state, _, _ = opened()
    assert apply_event(state, ev("page_view"), RewardRule(), **KW).verdict == "ignored"


SHOWN = RewardRule(impressions="event")


def _timeout(state: dict, spec: RewardRule) -> dict:
    step = close_due(state, spec, now_ms=T0 + WINDOW + 1, grace_ms=0, retention_ms=60_000)
    assert step is not None
    return step.reward


def test_with_impressions_from_events_a_decision_never_shown_is_not_an_impression() -> None:
    state, _, _ = opened(SHOWN)
    reward = _timeout(state, SHOWN)
    assert reward["shown"] is False and reward["reward"] == 0.0


def test_an_impression_event_marks_the_decision_shown_once() -> None:
    state, _, _ = opened(SHOWN)
    step = apply_event(state, ev("impression", "i1"), SHOWN, **KW)
    assert step.verdict == "attributed" and step.reward is None
    again = apply_event(step.state, ev("impression", "i2"), SHOWN, **KW)
    assert again.verdict == "duplicate"
    assert _timeout(step.state, SHOWN)["shown"] is True


def test_a_click_without_an_impression_event_still_counts_as_shown() -> None:
    state, _, _ = opened(SHOWN)
    assert apply_event(state, ev("click"), SHOWN, **KW).reward["shown"] is True


def test_impression_held_before_its_decision_counts_when_it_arrives() -> None:
    held = hold_event(
        None, ev("impression", "i1"), user_id="u1", partition=0, now_ms=T0, max_hold_ms=1000
    ).state
    state, _, verdicts = opened(SHOWN, held)
    assert verdicts == ["attributed"]
    assert _timeout(state, SHOWN)["shown"] is True


def test_with_impressions_from_decisions_every_decision_is_shown() -> None:
    state, _, _ = opened()
    assert _timeout(state, RewardRule())["shown"] is True


def test_late_impression_does_not_make_a_closed_decision_shown() -> None:
    state, _, _ = opened(SHOWN)
    late = apply_event(state, ev("impression", "i1", at=T0 + WINDOW + 5), SHOWN, **KW)
    assert late.verdict == "late"
    assert _timeout(late.state, SHOWN)["shown"] is False


def test_impression_source_from_campaign_and_bad_value() -> None:
    assert RewardRule.from_campaign({"campaign_id": "c"}).impressions == "decision"
    assert RewardRule.from_campaign({"campaign_id": "c", "impressions": "event"}) == SHOWN
    with pytest.raises(ValueError, match="impressions 'sometimes'"):
        RewardRule.from_campaign({"campaign_id": "c", "impressions": "sometimes"})


def test_reward_spec_from_campaign_and_bad_kind() -> None:
    spec = RewardRule.from_campaign(
        {
            "campaign_id": "c",
            "reward": {
                "kind": "weighted",
                "click_weight": 1.0,
                "conversion_weight": 0.0,
                "value_weight": 0.2,
                "sentiment_weight": 0.0,
            },
        }
    )
    assert spec.kind == "weighted" and spec.value_weight == 0.2
    with pytest.raises(ValueError, match="reward kind 'likes'"):
        RewardRule.from_campaign({"campaign_id": "c", "reward": {"kind": "likes"}})


def test_missing_window_uses_default() -> None:
    state, _, _ = open_decision(
        decision(attribution_window_ms=0),
        None,
        RewardRule(),
        partition=0,
        now_ms=T0,
        default_window_ms=7000,
        retention_ms=1,
    )
    assert state["deadline"] == T0 + 7000
