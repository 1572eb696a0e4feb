"""The fault suite's books: each rule balances a clean run and catches the failure it names."""

from __future__ import annotations

from typing import Any

from services.chaos import books as B


def ev(event_id: str, consent: bool = True) -> dict[str, Any]:
    return {"event_id": event_id, "consent": {"personalization": consent}}


def test_raw_books_balance_with_duplicates_consent_drops_and_dead_letters() -> None:
    raw = [ev("a"), ev("b"), ev("a"), ev("c", consent=False), ev("d"), ev("e")]
    books = B.raw_books(raw, forwarded_ids=["a", "b", "e"], dead_letters=1, dead_lettered_ids=["d"])
    assert books["imbalance"] == 0
    assert (books["duplicates"], books["consent_dropped"], books["missing"]) == (1, 1, 0)
    assert books["forwarded_twice"] == 0


def test_raw_books_catch_a_lost_and_a_double_forwarded_event() -> None:
    raw = [ev("a"), ev("b"), ev("c")]
    lost = B.raw_books(raw, forwarded_ids=["a", "b"], dead_letters=0)
    assert lost["imbalance"] == 1 and lost["missing"] == 1
    twice = B.raw_books(raw, forwarded_ids=["a", "b", "c", "c"], dead_letters=0)
    assert twice["imbalance"] == -1 and twice["forwarded_twice"] == 1
    assert B.problems(_clean(raw=twice))


def test_simulator_books_find_written_events_missing_from_the_topic() -> None:
    log = [
        {"event_id": "a", "sent": True},
        {"event_id": "b", "sent": True},
        {"event_id": "c", "sent": False},
        {"event_id": "d", "sent": False},
    ]
    books = B.simulator_books(log, raw_ids={"a", "d"})
    assert books == {"written": 2, "not_written": 2, "lost": 1, "not_written_but_landed": 1}


def test_decision_books_want_exactly_one_record_per_answer() -> None:
    books = B.decision_books(["d1", "d2", "d3"], ["d1", "d2", "d2", "x"])
    assert books["without_decision"] == 1 and books["duplicate_decisions"] == 1


def test_reward_books_see_clicks_turned_into_timeouts() -> None:
    clicks = [
        {"decision_id": "d1", "consent": True},
        {"decision_id": "d2", "consent": True},
        {"decision_id": "d3", "consent": True},
        {"decision_id": "d4", "consent": False},  # never reaches features: not counted
    ]
    rewards = [
        {"decision_id": "d1", "clicked": True, "outcome": "click"},
        {"decision_id": "d2", "clicked": False, "outcome": "timeout"},
        {"decision_id": "d5", "clicked": False, "outcome": "timeout"},
        {"decision_id": "d5", "clicked": False, "outcome": "timeout"},
    ]
    books = B.reward_books(clicks, rewards)
    assert books["clicks_written"] == 3 and books["clicked_rewards"] == 1
    assert books["clicks_turned_into_timeout"] == 1 and books["clicks_without_reward"] == 1
    # d5's second Reward is the same one sent again (features is at least once): allowed
    assert books["decisions_rewarded_again_unchanged"] == 1
    assert books["decisions_rewarded_differently"] == 0
    assert B.problems(_clean(rewards=books)) == [
        "1 clicks became timeout rewards",
        "1 clicks have no reward",
    ]


def test_a_click_after_its_window_by_event_time_is_a_rightful_timeout() -> None:
    """Decide answered slowly during a fault: the app clicked 2.5 s after receiving the
    answer, 3.4 s after decided_at, beyond a 3 s window — the timeout is the contract's answer,
    counted apart, not an imbalance; a click inside the window that became a timeout still is."""
    t0 = 1_796_000_000_000
    decisions = [{"decision_id": d, "decided_at": t0} for d in ("d1", "d2")]
    events = [
        {"decision_id": "d1", "type": "click", "occurred_at": t0 + 3_400},
        {"decision_id": "d2", "type": "click", "occurred_at": t0 + 2_900},
        {"decision_id": "d2", "type": "impression", "occurred_at": t0 + 9_000},
    ]
    late = B.clicks_after_window(events, decisions, 3_000)
    assert late == {"d1"}
    clicks = [{"decision_id": "d1"}, {"decision_id": "d2"}]
    rewards = [
        {"decision_id": "d1", "clicked": False, "outcome": "timeout"},
        {"decision_id": "d2", "clicked": False, "outcome": "timeout"},
    ]
    books = B.reward_books(clicks, rewards, None, late)
    assert books["clicks_after_window"] == 1 and books["clicks_turned_into_timeout"] == 1
    assert B.problems(_clean(rewards=books)) == ["1 clicks became timeout rewards"]


def test_reward_books_flag_differing_rewards_not_identical_resends() -> None:
    clicks = [{"decision_id": "d1"}, {"decision_id": "d2"}]
    same = {"decision_id": "d1", "clicked": True, "outcome": "click", "rewarded_at": 1}
    rewards = [same, dict(same), {"decision_id": "d2", "clicked": True}]
    rewards += [{"decision_id": "d2", "clicked": False, "outcome": "timeout"}]
    books = B.reward_books(clicks, rewards)
    assert books["decisions_rewarded_again_unchanged"] == 1
    assert books["decisions_rewarded_differently"] == 1
    assert B.problems(_clean(rewards=books)) == ["1 decisions got differing rewards"]


def test_reward_books_count_a_restamped_copy_as_differing() -> None:
    same = {"decision_id": "d1", "clicked": True, "outcome": "click", "rewarded_at": 1}
    books = B.reward_books([{"decision_id": "d1"}], [same, {**same, "rewarded_at": 2}])
    assert books["decisions_rewarded_differently"] == 1
    assert books["decisions_rewarded_again_unchanged"] == 0


def test_reward_books_set_apart_clicks_on_decisions_never_logged() -> None:
    clicks = [{"decision_id": "d1"}, {"decision_id": "lost"}]
    rewards = [{"decision_id": "d1", "clicked": True, "outcome": "click"}]
    books = B.reward_books(clicks, rewards, decision_ids=["d1"])
    assert books["clicks_on_unlogged_decisions"] == 1 and books["clicks_without_reward"] == 0
    assert B.balanced(_clean(rewards=books))
    assert B.reward_books(clicks, rewards)["clicks_without_reward"] == 1


def test_model_books_count_answers_without_a_model_after_the_first() -> None:
    rows = [{"model_version": None}, {"model_version": "v1"}, {"model_version": None}]
    assert B.model_books(rows)["served_without_model_after_first"] == 1


def test_availability_counts_failures_and_seconds_per_fault_kind() -> None:
    rows = [{"at": 100.2}, {"at": 101.1, "error": "x"}, {"at": 101.7, "error": "x"}]
    rows += [{"at": 103.5, "error": "x"}, {"at": 200.0, "error": "x"}]
    faults = [{"kind": "kill-inference", "start": 101.0, "end": 101.0}]
    out = B.availability(rows, faults, grace_s=2.0)
    assert out["kill-inference"] == {
        "faults": 1, "decide_failures": 2, "unavailable_s": 1, "worst_s": 1
    }  # fmt: skip
    # until the stack had recovered (readiness), then the grace
    faults[0]["recovered_s"] = 1.0
    out = B.availability(rows, faults, grace_s=2.0)
    assert out["kill-inference"]["decide_failures"] == 3
    assert out["kill-inference"]["unavailable_s"] == 2


def _clean(**override: dict[str, Any]) -> dict[str, Any]:
    books: dict[str, Any] = {
        "raw": B.raw_books([ev("a")], ["a"], 0),
        "simulator": B.simulator_books([{"event_id": "a", "sent": True}], {"a"}),
        "decisions": B.decision_books(["d"], ["d"]),
        "rewards": B.reward_books([{"decision_id": "d"}], [{"decision_id": "d", "clicked": True}]),
        "models": B.model_books([{"model_version": "v"}]),
        "services": {"inference": {"state": "up", "gave_up": False}},
    }
    books.update(override)
    return books


def test_a_clean_run_balances_and_a_service_left_down_does_not() -> None:
    assert B.balanced(_clean())
    down = _clean(services={"features": {"state": "DOWN (gave up)", "gave_up": True}})
    assert B.problems(down) == ["features was DOWN (gave up) at the end"]
