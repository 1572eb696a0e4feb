"""Ingestion's claim for a raw partition follows its live sources' claims (raw_sources.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.common.watermark import END_OF_TIME, LIVE
from services.ingestion.raw_sources import RawSources
from services.ingestion.watermarks import RawClock

T0 = 1_796_000_000_000
SKEW = 1000


def _clock(learn_ms: int = 0, expiry_ms: int = 30_000) -> RawClock:
    return RawClock(SKEW, RawSources(learn_ms, expiry_ms))


def _claim(clock: RawClock, r: int = 0) -> int | None:
    return clock.claims().get(LIVE, {}).get(r)


def test_a_source_holding_an_event_holds_the_claim_while_raw_is_read_to_its_end() -> None:
    clock = _clock()
    clock.source(LIVE, 0, T0 - 5_000, "simulator-a")  # it holds an event from T0 - 5 s
    clock.caught_up([0], T0 + 20_000)
    assert _claim(clock) == T0 - 5_000
    clock.source(LIVE, 0, T0 + 20_000, "simulator-a")  # resent: its claim moves on
    clock.caught_up([0], T0 + 20_500)
    assert _claim(clock) == T0 + 20_500 - SKEW - 1  # the skew rule caps it again


def test_without_sources_the_skew_rule_alone_applies() -> None:
    clock = _clock()
    clock.caught_up([0, 1], T0)
    assert clock.claims()[LIVE] == {0: T0 - SKEW - 1, 1: T0 - SKEW - 1}


def test_after_an_assignment_no_claim_until_the_sources_are_learned() -> None:
    clock = _clock(learn_ms=2_000)
    clock.caught_up([0], T0)
    clock.caught_up([0], T0 + 1_000)
    assert _claim(clock) is None
    clock.source(LIVE, 0, T0 - 10_000, "collector-0")
    clock.caught_up([0], T0 + 2_000)
    assert _claim(clock) == T0 - 10_000


def test_an_outage_does_not_count_towards_learning_or_expiry() -> None:
    clock = _clock(learn_ms=2_000, expiry_ms=5_000)
    clock.caught_up([0], T0)
    clock.source(LIVE, 0, T0 - 100, "simulator-a")
    for t in range(0, 2_001, 200):
        clock.caught_up([0], T0 + t)
    assert _claim(clock) == T0 - 100
    # 60 s without Kafka answering: one gap counts 2 s at most
    clock.caught_up([0], T0 + 62_000)
    assert _claim(clock) == T0 - 100
    assert clock.sources.take_reports() == ([], [])


def test_a_silent_source_expires_counted_and_an_ended_one_is_forgotten() -> None:
    clock = _clock(expiry_ms=3_000)
    clock.source(LIVE, 0, T0 - 100, "dead")
    clock.source(LIVE, 0, T0 - 50, "done")
    clock.source(LIVE, 0, END_OF_TIME, "done")
    for t in range(0, 4_001, 500):
        clock.source(LIVE, 0, T0 + t - 10, "alive")
        clock.caught_up([0], T0 + t)
    expired, ended = clock.sources.take_reports()
    assert expired == [(0, "dead", T0 - 100)] and ended == [(0, "done")]
    assert _claim(clock) == T0 + 4_000 - SKEW - 1
    assert clock.sources.count() == 1


def test_other_clocks_are_not_bounded_by_live_sources() -> None:
    clock = _clock()
    clock.source(LIVE, 0, T0 - 100_000, "simulator-a")
    clock.source("replay:log.jsonl", 0, END_OF_TIME, "admuse-replay")
    assert clock.claims()["replay:log.jsonl"] == {0: END_OF_TIME}


@given(
    claims=st.lists(
        st.tuples(st.integers(0, 2), st.integers(-50_000, 50_000)), min_size=1, max_size=30
    ),
    ticks=st.lists(st.integers(0, 3_000), min_size=1, max_size=20),
)
def test_the_claim_never_passes_a_live_sources_claim(
    claims: list[tuple[int, int]], ticks: list[int]
) -> None:
    clock = _clock(learn_ms=0, expiry_ms=10**9)
    latest: dict[str, int] = {}
    for who, mark in claims:
        clock.source(LIVE, 0, T0 + mark, f"s{who}")
        latest[f"s{who}"] = T0 + mark
    now = T0
    for t in ticks:
        now += t
        clock.caught_up([0], now)
        assert _claim(clock) is not None
        assert _claim(clock) <= min(latest.values())
    # claims only grow: the largest bound seen so far
    assert _claim(clock) == min([*latest.values(), now - SKEW - 1])
