"""Domain feedback events (music, film) through the attribution join: kept per decision,
turned into a reward by the campaign's domain when the window closes."""

from __future__ import annotations

import pytest

from services.common.campaign import campaign_record, parse_spec
from services.domains import DomainError, check_record
from services.features.attribution import RewardRule, apply_event, close_due
from tests.unit.domains.fixtures import FILM_SPEC, MUSIC_SPEC
from tests.unit.features.test_attribution import KW, T0, WINDOW, ev, opened

MUSIC = {
    **MUSIC_SPEC,
    "reward": {"kind": "events", "events": {"listen_through": 0.6, "like": 0.3, "replay": 0.1}},
}


def _rule(spec: dict) -> RewardRule:
    record = campaign_record(parse_spec(spec), revision=1)
    check_record(record)
    return RewardRule.from_campaign(record)


def _run(rule: RewardRule, events: list[dict]) -> tuple[dict, list[str]]:
    state, _, _ = opened(rule)
    verdicts = []
    for e in events:
        step = apply_event(state, e, rule, **KW)
        verdicts.append(step.verdict)
        state = step.state or state
    done = close_due(state, rule, now_ms=T0 + WINDOW + 10, grace_ms=0, retention_ms=60_000)
    assert done is not None and done.verdict == "closed"
    return done.reward, verdicts


def test_listening_becomes_the_weighted_reward_at_window_close() -> None:
    rule = _rule(MUSIC)
    assert rule.kind == "events" and rule.domain == "music"
    reward, verdicts = _run(
        rule,
        [
            ev("play", "e1"),
            ev("listen_through", "e2", value=0.5),
            ev("replay", "e3"),
            ev("replay", "e4"),
            ev("like", "e5"),
            ev("like", "e5"),  # the same event again
            ev("like", "e6", at=T0 + WINDOW + 1),  # after the window
        ],
    )
    assert verdicts == ["attributed"] * 5 + ["duplicate", "late"]  # nothing settles early
    assert reward["reward"] == pytest.approx(0.6 * 0.5 + 0.1 * 2 + 0.3)
    assert reward["outcome"] == "timeout" and not reward["clicked"]


def test_a_skip_alone_earns_nothing_and_a_vote_earns_one() -> None:
    assert _run(_rule(MUSIC), [ev("play", "e1"), ev("skip", "e2")])[0]["reward"] == 0.0
    film = {
        **FILM_SPEC,
        "reward": {"kind": "events", "events": {"vote": 1.0, "watch_through": 0.2}},
    }
    reward, _ = _run(_rule(film), [ev("watch_through", "e1", value=1.0), ev("vote", "e2")])
    assert reward["reward"] == 1.0  # clipped: one vote is the whole unit


def test_reward_events_must_belong_to_the_domain() -> None:
    wrong = {**MUSIC_SPEC, "reward": {"kind": "events", "events": {"vote": 1.0}}}
    with pytest.raises(DomainError, match=r"reward events \['vote'\]"):
        _rule(wrong)
    with pytest.raises(ValueError, match="one above 0"):
        parse_spec({**MUSIC_SPEC, "reward": {"kind": "events", "events": {"like": 0.0}}})


def test_banner_rewards_ignore_feedback_events() -> None:
    reward, verdicts = _run(RewardRule(), [ev("like", "e1"), ev("play", "e2")])
    assert reward["reward"] == 0.0 and verdicts == ["attributed", "attributed"]
