"""Counters, Beta posterior with decay, tumbling windows, partial folding."""

from __future__ import annotations

import pytest

from services.features.stats import (
    Counters,
    Partial,
    StatsKey,
    fold_partial,
    merge,
    stats_keys,
    stats_record,
    totals,
    window_start,
)

T0 = 1_800_000_000_000


def reward(r: float = 1.0, clicked: bool = True, converted: bool = False, **over) -> dict:
    return {
        "reward": r,
        "clicked": clicked,
        "converted": converted,
        "decided_at": T0,
        "campaign_id": "c",
        "segment": "country=DE",
        "creative_id": "cr1",
        **over,
    }


def test_counters_count_and_update_beta() -> None:
    c = Counters().add(reward(), T0, None).add(reward(0.0, clicked=False), T0, None)
    assert (c.impressions, c.clicks, c.conversions, c.reward_sum) == (2, 1, 0, 1.0)
    assert (c.successes, c.failures, c.n) == (1.0, 1.0, 2)


def test_rewards_above_one_count_fully_in_reward_sum_but_clip_in_beta() -> None:
    c = Counters().add(reward(3.5), T0, None)
    assert c.reward_sum == 3.5 and c.successes == 1.0 and c.failures == 0.0


def test_decay_halves_evidence_after_one_half_life() -> None:
    c = Counters().add(reward(), T0, 10.0)
    later = c.add(reward(0.0, clicked=False), T0 + 10_000, 10.0)
    assert later.successes == pytest.approx(0.5) and later.failures == pytest.approx(1.0)
    assert later.impressions == 2  # counters never decay


def test_merge_decays_partials_to_the_newest_time() -> None:
    a = Counters().add(reward(), T0, 10.0)
    b = Counters().add(reward(0.0, clicked=False), T0 + 10_000, 10.0)
    m = merge([a, b], 10.0)
    assert m.successes == pytest.approx(0.5) and m.failures == pytest.approx(1.0)
    assert m.impressions == 2 and m.at_ms == T0 + 10_000
    assert merge([a, b], None).successes == 1.0


def test_window_start_is_epoch_aligned() -> None:
    assert window_start(3_600_000 * 5 + 17, 3_600_000) == 3_600_000 * 5


def test_stats_keys_cover_segment_and_rollup_cumulative_and_windowed() -> None:
    keys = {k.key for k in stats_keys(reward(), 3_600_000)}
    ws = window_start(T0, 3_600_000)
    assert keys == {"c/country=DE/cr1", "c/*/cr1", f"c/country=DE/cr1@{ws}", f"c/*/cr1@{ws}"}
    assert len(stats_keys(reward(segment="*"), 3_600_000)) == 2


def test_fold_keeps_newest_partial_per_partition_and_ignores_replays() -> None:
    group = StatsKey("c", "*", "cr1")
    add = {"half_life_s": None, "window_ms": 60_000}
    one = Partial().add(reward(), T0, **add)
    two = one.add(reward(0.0, clicked=False), T0, **add)
    entry = fold_partial(None, group, 0, two)
    assert fold_partial(entry, group, 0, one) is None  # older partial: no change
    assert fold_partial(entry, group, 0, two) is None  # same partial again: no change
    entry = fold_partial(entry, group, 1, one)
    [(cum_key, cum), (win_key, win)] = totals(entry, None)
    assert cum_key == group and (cum.impressions, cum.clicks) == (3, 2)
    assert win_key == group.windowed(window_start(T0, 60_000))
    assert (win.impressions, win.clicks) == (3, 2)


def test_partials_keep_recent_windows_and_dropped_windows_are_not_republished() -> None:
    add = {"half_life_s": None, "window_ms": 1000}
    p = Partial()
    for i in range(6):
        p = p.add(reward(decided_at=T0 + i * 1000), T0, **add)
    assert sorted(p.windows) == [T0 + 2000, T0 + 3000, T0 + 4000, T0 + 5000]
    assert p.floor == T0 + 1000 and p.cumulative.impressions == 6
    p = Partial.from_json(p.to_json())
    q = Partial().add(reward(decided_at=T0 + 1000), T0, **add)  # another partition
    group = StatsKey("c", "*", "cr1")
    entry = fold_partial(fold_partial(None, group, 0, p), group, 1, q)
    keys = [k.window_start for k, _ in totals(entry, None)]
    assert keys == [None, T0 + 2000, T0 + 3000, T0 + 4000, T0 + 5000]  # T0+1000 is final


def test_stats_record_adds_prior_and_marks_windows() -> None:
    c = Counters().add(reward(), T0, None)
    rec = stats_record(
        StatsKey("c", "*", "cr1", T0),
        c,
        prior_alpha=2.0,
        prior_beta=3.0,
        half_life_s=None,
        window_ms=60_000,
        now_ms=T0 + 5,
    )
    assert (rec["alpha"], rec["beta"], rec["window_ms"], rec["window_start"]) == (
        3.0,
        3.0,
        60_000,
        T0,
    )
    rec = stats_record(
        StatsKey("c", "*", "cr1"),
        c,
        prior_alpha=1,
        prior_beta=1,
        half_life_s=30.0,
        window_ms=60_000,
        now_ms=T0 + 5,
    )
    assert rec["window_ms"] is None and rec["decay_half_life_s"] == 30.0
    assert rec["updated_at"] == T0


def test_a_decision_never_shown_counts_as_unshown_not_as_an_impression() -> None:
    c = Counters().add(reward(0.0, clicked=False, shown=False), T0, None).add(reward(), T0, None)
    assert (c.impressions, c.unshown, c.clicks, c.successes, c.failures) == (1, 1, 1, 1.0, 0.0)
    rec = stats_record(
        StatsKey("c", "country=DE", "cr1"),
        merge([c, Counters().add(reward(0.0, clicked=False, shown=False), T0, None)], None),
        prior_alpha=1.0,
        prior_beta=1.0,
        half_life_s=None,
        window_ms=1000,
        now_ms=T0,
    )
    assert (rec["impressions"], rec["unshown"], rec["alpha"], rec["beta"]) == (1, 2, 2.0, 1.0)
    assert (rec["successes"], rec["failures"]) == (1.0, 0.0)
