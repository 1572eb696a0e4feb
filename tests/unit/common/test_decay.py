"""Per-observation decay against a brute-force reference: every observation weighted by its own
age, whatever order the observations arrive in and however they are split into partials."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.decay import Evidence, weight
from services.features.stats import Counters, merge

T0 = 1_800_000_000_000

observation = st.tuples(
    st.floats(0.0, 1.0, allow_nan=False),  # reward
    st.integers(0, 3_600_000),  # ms after T0
    st.integers(0, 3),  # partition
)


def brute_force(obs: list[tuple[float, int, int]], at_ms: int, half_life_s: float | None):
    """Σ r·2^(-(at − t)/h) and Σ (1 − r)·2^(-(at − t)/h), term by term."""
    s = f = 0.0
    for r, t, _ in obs:
        w = 0.5 ** ((at_ms - (T0 + t)) / 1000.0 / half_life_s) if half_life_s else 1.0
        s += r * w
        f += (1.0 - r) * w
    return s, f


@settings(max_examples=200, deadline=None)
@given(
    st.lists(observation, min_size=1, max_size=40),
    st.one_of(st.none(), st.floats(1.0, 7200.0)),
    st.integers(0, 7_200_000),
)
def test_decayed_evidence_matches_brute_force_in_any_order_and_split(
    obs: list[tuple[float, int, int]], half_life_s: float | None, read_after_ms: int
) -> None:
    parts: dict[int, Counters] = {}
    for r, t, p in obs:
        rec = {"reward": r, "clicked": r > 0.5, "converted": False}
        parts[p] = parts.get(p, Counters()).add(rec, T0 + t, half_life_s)
    total = merge(parts.values(), half_life_s)
    newest = T0 + max(t for _, t, _ in obs)
    assert total.at_ms == newest
    want = brute_force(obs, newest, half_life_s)
    assert total.successes == pytest.approx(want[0], rel=1e-9, abs=1e-9)
    assert total.failures == pytest.approx(want[1], rel=1e-9, abs=1e-9)
    later = total.evidence.at(newest + read_after_ms, half_life_s)
    want_later = brute_force(obs, newest + read_after_ms, half_life_s)
    assert later.successes == pytest.approx(want_later[0], rel=1e-9, abs=1e-9)
    assert later.failures == pytest.approx(want_later[1], rel=1e-9, abs=1e-9)


def test_steady_traffic_still_forgets_old_evidence() -> None:
    """One click an hour ago, then a no-click every minute: the old click fades although the
    creative was updated a moment ago (the age of the last update would not discount it)."""
    ev = Evidence().add(1.0, T0, 600.0)
    for minute in range(1, 61):
        ev = ev.add(0.0, T0 + minute * 60_000, 600.0)
    assert ev.successes == pytest.approx(2.0**-6)
    assert ev.at_ms == T0 + 3_600_000


def test_reading_earlier_changes_nothing_and_no_half_life_never_decays() -> None:
    ev = Evidence(3.0, 5.0, T0)
    assert ev.at(T0 - 1000, 10.0) == ev
    assert ev.at(T0 + 10**9, None).successes == 3.0
    assert weight(10_000, 10.0) == pytest.approx(0.5)
    assert math.isclose(Evidence.sum([ev, Evidence()], 10.0).total, 8.0)
