"""The join over a table: outcomes, erasure, and replay after a crash at any point.

A crash is modelled the way the worker fails: table writes reach the changelog in order,
the offset commit comes after everything before it was flushed, and on restart the table is
rebuilt from what reached the changelog while messages after the commit are processed again.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from services.features.attribution import RewardRule
from services.features.join import DECISIONS, EVENTS, JoinConfig, JoinTable, Outputs
from services.features.stats import StatsKey, fold_partial, totals

T0 = 1_800_000_000_000
CONFIG = JoinConfig(
    default_window_ms=2000,
    close_grace_ms=100,
    retention_ms=5000,
    max_hold_ms=3000,
    stats_window_ms=60_000,
)


class LoggedTable(dict):
    """A dict that records every write in order, like a changelog."""

    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        self.log: list[tuple[str, Any]] = []

    def __setitem__(self, key: str, value: Any) -> None:
        self.log.append((key, value))
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self.log.append((key, None))
        super().__delitem__(key)

    def pop(self, key: str, *default: Any) -> Any:
        if key in self:
            value = self[key]
            del self[key]
            return value
        return default[0] if default else None


# Done joins must outlive any replay (in the worker: an hour against a commit every second).
REPLAY_CONFIG = JoinConfig(
    default_window_ms=2000,
    close_grace_ms=100,
    retention_ms=600_000,
    max_hold_ms=3000,
    stats_window_ms=60_000,
)


def make_join(table: dict | None = None, config: JoinConfig = CONFIG) -> JoinTable:
    return JoinTable(LoggedTable(table or {}), config, lambda _c: RewardRule())


def dec(i: int, t: int, creative: str = "cr1", user: str = "u1") -> dict[str, Any]:
    return {
        "decision_id": f"d{i}",
        "decided_at": t,
        "campaign_id": "c",
        "segment": "*",
        "context": {},
        "user_id": user,
        "creative_id": creative,
        "propensity": 0.5,
        "arm": "optimized",
        "policy": "thompson",
        "policy_version": "v",
        "model_version": None,
        "attribution_window_ms": 2000,
    }


def click(i: int, eid: str, t: int, user: str = "u1") -> dict[str, Any]:
    return {
        "event_id": eid,
        "type": "click",
        "occurred_at": t,
        "decision_id": f"d{i}",
        "user_id": user,
        "value": None,
        "sentiment": None,
    }


def run(join: JoinTable, tag: str, payload: Any, offset: int, now: int, late: int = 0) -> Outputs:
    """Process one message whose record carries time `now`, `late` ms after it was written
    (a tick carries its watermark and its time in the record itself)."""
    if tag == DECISIONS:
        return join.on_decision(payload, 0, offset, now + late, now)
    if payload is None:
        return join.on_tick(0, offset, now)
    return join.on_event(payload, 0, offset, now + late, now)


def test_outcomes_through_the_table() -> None:
    join = make_join()
    join.on_event(click(2, "early", T0 + 10), 0, 0, T0)  # before its decision
    out = join.on_decision(dec(1, T0), 0, 0, T0)
    assert out.rewards == [] and join.counts() == (1, 1)
    out = join.on_decision(dec(2, T0), 0, 1, T0 + 20)
    assert [r["decision_id"] for r in out.rewards] == ["d2"]  # held click joined
    out = join.on_tick(0, 1, T0 + 2000 + 99)
    assert out.rewards == []
    out = join.on_tick(0, 2, T0 + 2100)
    assert [(r["decision_id"], r["reward"]) for r in out.rewards] == [("d1", 0.0)]
    assert out.closed_due == [T0 + 2100]
    out = join.on_event(click(1, "late", T0 + 2500), 0, 3, T0 + 2600)
    assert out.verdicts == ["late"] and out.rewards == []
    assert join.partial(StatsKey("c", "*", "cr1"), 0).cumulative.impressions == 2
    assert join.partial(StatsKey("c", "*", "cr1"), 0).cumulative.clicks == 1
    join.on_tick(0, 5, T0 + 8000)  # retention over: done joins dropped
    assert not any(k.startswith("d:") for k in join.table)


def test_held_events_expire_as_unmatched() -> None:
    join = make_join()
    join.on_event(click(9, "x", T0), 0, 0, T0)
    assert join.on_tick(0, 1, T0 + 2999).unmatched == 0
    assert join.on_tick(0, 2, T0 + 3000).unmatched == 1
    assert join.counts() == (0, 0)


DECISION_MARKS = JoinConfig(
    default_window_ms=2000,
    close_grace_ms=100,
    retention_ms=5000,
    max_hold_ms=3000,
    stats_window_ms=60_000,
    decision_watermarks=True,
)


def test_held_events_wait_for_the_decision_watermark_not_the_wall_clock() -> None:
    """A decision stuck in inference's spool: however far the events' clock runs on, its
    click stays held while the decisions' watermark has not passed the click; the decision
    then arrives and joins it."""
    join = make_join(config=DECISION_MARKS)
    join.on_event(click(1, "early", T0 + 10), 0, 0, T0 + 10)
    assert join.on_tick(0, 1, T0 + 3_600_000).unmatched == 0  # an hour of live time
    assert join.on_decisions_mark(0, 0, "inference", T0 + 5).unmatched == 0
    out = join.on_decision(dec(1, T0), 0, 1, T0 + 3_600_000)
    assert out.rewards and out.rewards[0]["clicked"]  # joined when the decision came
    assert join.counts()[1] == 0  # nothing held any more


def test_held_events_expire_once_the_decision_watermark_passes_them() -> None:
    join = make_join(config=DECISION_MARKS)
    join.on_event(click(9, "x", T0), 0, 0, T0)
    join.on_event(click(9, "y", T0 + 1000), 0, 1, T0 + 1000)  # the allowance moves with it
    assert join.on_decisions_mark(0, 0, "inference", T0 + 3000).unmatched == 0
    assert join.on_decisions_mark(0, 1, "replay:x.csv", T0 + 10_000).unmatched == 0  # not its
    assert join.on_decisions_mark(0, 2, "inference", T0 + 3999).unmatched == 0
    assert join.on_decisions_mark(0, 3, "inference", T0 + 4000).unmatched == 2
    assert join.counts() == (0, 0)


def test_held_replayed_events_wait_on_their_replays_decisions() -> None:
    join = make_join(config=DECISION_MARKS)
    join.on_event({**click(9, "x", T0), "source": "admuse-replay:x.csv"}, 0, 0, T0)
    assert join.on_decisions_mark(0, 0, "inference", T0 + 60_000).unmatched == 0
    assert join.on_decisions_mark(0, 1, "replay:x.csv", 2**62).unmatched == 1


def test_erasure_deletes_only_that_users_state() -> None:
    join = make_join()
    join.on_decision(dec(1, T0, user="alice"), 0, 0, T0)
    join.on_decision(dec(2, T0, user="bob"), 0, 1, T0)
    join.on_event(click(3, "e", T0, user="alice"), 0, 0, T0)
    assert join.on_erase("alice", 0) == 2
    assert join.on_erase("alice", 0) == 0
    assert set(k for k in join.table if not k.startswith("s:")) == {"d:d2"}
    # the erased decision never gets a reward
    out = join.on_tick(0, 1, T0 + 10_000)
    assert [r["decision_id"] for r in out.rewards] == ["d2"]


def _stream(rng: random.Random, n: int) -> list[tuple[str, Any, int, int]]:
    """(tag, payload, offset, now) for one partition: decisions, clicks (some duplicated,
    some early, some late) and ticks."""
    items: list[tuple[str, Any, int]] = []  # tag, payload, now
    t = T0
    for i in range(n):
        t += rng.randint(0, 300)
        creative = rng.choice(["cr1", "cr2"])
        items.append((DECISIONS, dec(i, t, creative), t))
        if rng.random() < 0.5:
            delay = rng.choice([-50, 100, 500, 1500, 2500])  # -50: click before decision
            for dup in range(rng.choice([1, 1, 2])):
                items.append((EVENTS, click(i, f"c{i}", t + max(delay, 0)), t + delay + dup))
        if rng.random() < 0.3:  # a tick; sparse, so one tick often closes several windows
            items.append((EVENTS, None, t))
    items.sort(key=lambda x: x[2])
    offsets = {DECISIONS: 0, EVENTS: 0}
    out = []
    for tag, payload, now in items:
        out.append((tag, payload, offsets[tag], now))
        offsets[tag] += 1
    end = items[-1][2] + 10_000
    out.append((EVENTS, None, offsets[EVENTS], end))
    return out


def _final(rewards: list[dict], partials: list) -> tuple[dict, dict]:
    by_decision: dict[str, dict] = {}
    for r in rewards:  # every copy is the same Reward, field for field
        assert by_decision.setdefault(r["decision_id"], r) == r
    agg: dict[str, Any] = {}
    for group, p, partial in partials:
        folded = fold_partial(agg.get(group.key), group, p, partial)
        if folded is not None:
            agg[group.key] = folded
    stats = {key.key: (c.impressions, c.clicks) for e in agg.values() for key, c in totals(e, None)}
    return by_decision, stats


@pytest.mark.parametrize("seed", range(40))
def test_crash_anywhere_then_replay_counts_every_decision_exactly_once(seed: int) -> None:
    rng = random.Random(seed)
    stream = _stream(rng, 40)

    ref = make_join(config=REPLAY_CONFIG)
    ref_out = [run(ref, *m) for m in stream]
    expected = _final([r for o in ref_out for r in o.rewards], ref.take_dirty())
    assert len(expected[0]) == 40  # every decision got exactly one reward
    truth: dict[str, list[int]] = {}
    for tag, payload, _, _ in stream:
        if tag == DECISIONS:
            r = ref.table[f"d:{payload['decision_id']}"]["reward"]
            counts = truth.setdefault(f"c/*/{payload['creative_id']}", [0, 0])
            counts[0] += 1
            counts[1] += r["clicked"]
    assert {k: tuple(v) for k, v in truth.items()} == {
        k: v for k, v in expected[1].items() if "@" not in k
    }

    table: dict = {}
    delivered_rewards: list[dict] = []
    delivered_partials: list = []
    start = 0
    for crash in range(5):
        join = make_join(table, REPLAY_CONFIG)
        late = crash * rng.randint(1, 1000)  # a message handled again is handled later
        k = rng.randint(start, len(stream))  # processed up to (excluding) k, then crash
        commit = rng.randint(start, k)  # offsets committed up to (excluding) `commit`
        writes_at_commit = 0
        outs = []
        for i in range(start, k):
            if i == commit:
                writes_at_commit = len(join.table.log)
            outs.append(run(join, *stream[i], late=late))
            if rng.random() < 0.2:  # the flush timer ran: partials published
                delivered_partials += join.take_dirty()
        if commit == k:
            writes_at_commit = len(join.table.log)
        # the changelog holds everything up to the commit and maybe some more (a prefix)
        persisted = join.table.log[: rng.randint(writes_at_commit, len(join.table.log))]
        for o in outs[: commit - start]:  # outputs before the commit were flushed
            delivered_rewards += o.rewards
        for o in outs[commit - start :]:  # after it, some sends reached the broker
            delivered_rewards += [r for r in o.rewards if rng.random() < 0.5]
        for key, value in persisted:
            if value is None:
                table.pop(key, None)
            else:
                table[key] = value
        start = commit
    join = make_join(table, REPLAY_CONFIG)
    for i in range(start, len(stream)):
        delivered_rewards += run(join, *stream[i], late=5000).rewards
    delivered_rewards += join.on_tick(0, len(stream) + 1, stream[-1][3]).rewards  # ticks go on
    delivered_partials += join.take_dirty()
    assert _final(delivered_rewards, delivered_partials) == expected


def test_replayed_decisions_close_by_their_own_clock() -> None:
    join = make_join()
    old = {**dec(1, T0), "policy": "replay", "policy_version": "history.csv"}
    join.on_decision(old, 0, 0, T0 + 10**10)  # a year-old log, replayed much later
    join.on_decision(dec(2, T0), 0, 1, T0 + 10**10)  # a live decision, same window
    live_now = T0 + 10**10  # the live watermark is far past both windows
    out = join.on_tick(0, 1, live_now, wall_ms=live_now)
    assert [r["decision_id"] for r in out.rewards] == ["d2"]  # the replayed one waits
    out = join.on_tick(0, 2, live_now, sources={"replay:history.csv": T0 + 1000}, wall_ms=1)
    assert out.rewards == []  # its log has not reached the window's end yet
    out = join.on_event(click(1, "c1", T0 + 500), 0, 3, live_now)  # forwarded meanwhile
    assert [(r["decision_id"], r["outcome"]) for r in out.rewards] == [("d1", "click")]
    join.on_decision({**dec(3, T0), "policy": "replay", "policy_version": "history.csv"}, 0, 2, 0)
    out = join.on_tick(0, 4, live_now, sources={"replay:history.csv": T0 + 2100}, wall_ms=7)
    assert [(r["decision_id"], r["outcome"], r["rewarded_at"]) for r in out.rewards] == [
        ("d3", "timeout", 7)
    ]
