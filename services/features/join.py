"""The join over a key-value table: decisions ⨝ events, replay-safe.

`JoinTable` drives `attribution` and `stats` over one mutable mapping (a faust table with a
changelog in the worker, a dict in unit tests). Every key lives in the partition of the
message that wrote it, so a table partition holds everything about its decisions:

- ``d:<decision_id>`` the join of a decision (pending, then done until its retention ends);
- ``e:<decision_id>`` events held for a decision that has not arrived yet;
- ``s:<partition>:<stats key>`` this partition's partial counters for one stats key.

Processing is at-least-once: after a crash, messages past the last committed offset are
processed again, while the table may already hold their effect (a changelog write can land
before the offset commit). Each entry therefore records, per source topic, the offset of the
last message applied to it (``o``) and a message is applied to an entry at most once. Stats
entries are written before the join entry that caused them, so a join found applied implies
its stats were applied too. Outputs of a re-processed message are sent again (a Reward may
be seen twice: consumers de-duplicate by ``decision_id``; a partial is absolute, so twice is
harmless), because the first send may not have reached the broker before the crash. A copy
is the same Reward, field for field: whatever settles a join stamps it with the time the
settling record carries (an event's or decision's record timestamp, a tick's own time), never
with the clock of the process that happens to handle it — a message handled again after its
changelog write was lost settles the join again, and must say what it said the first time.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from services.common.watermark import DECIDED, LIVE
from services.features.attribution import (
    RewardRule,
    apply_event,
    close_due,
    event_of,
    hold_event,
    open_decision,
)
from services.features.replay_guard import applied, counted, marked, with_count
from services.features.stats import Partial, StatsKey, stats_groups
from services.features.watermark import clock_of_entry, held_clock

__all__ = ["DECISIONS", "EVENTS", "JoinConfig", "JoinTable", "Outputs"]

DECISIONS = "d"  # source tag of the decisions topic
EVENTS = "e"  # source tag of the events-by-decision topic (events, ticks, erasures)


@dataclass(frozen=True)
class JoinConfig:
    default_window_ms: int = 3_600_000
    close_grace_ms: int = 1000
    retention_ms: int = 3_600_000
    max_hold_ms: int = 600_000
    # Held events wait on the decisions' watermark (docs/contracts.md "Watermarks"): expired
    # once it passes their latest occurred_at + max_hold_ms. Off: max_hold_ms of the live
    # events clock after the first one was held (for writers that state no decision marks).
    decision_watermarks: bool = False
    stats_window_ms: int = 3_600_000
    half_life_s: float | None = None


@dataclass
class Outputs:
    """What one message produced: Rewards to publish, verdicts to count."""

    rewards: list[dict[str, Any]] = field(default_factory=list)
    verdicts: list[str] = field(default_factory=list)
    replayed: bool = False
    unmatched: int = 0
    closed_due: list[int] = field(default_factory=list)  # window ends (+grace) closed by a tick


class JoinTable:
    def __init__(
        self,
        table: MutableMapping[str, Any],
        config: JoinConfig,
        spec_for: Callable[[str], RewardRule],
    ) -> None:
        self.table = table
        self.config = config
        self.spec_for = spec_for
        # due time -> key, per partition and clock; local, rebuilt from the table when missing.
        self._heaps: dict[int, dict[str, list[tuple[int, str]]]] = {}
        # tick offset -> joins it closed, found when the heap is rebuilt (after a restart or
        # a rebalance): the ticks processed again then must send those Rewards again.
        self._closed_by: dict[int, dict[int, list[str]]] = {}
        # stats partials changed since they were last taken for publishing: (partition, key)
        self._dirty: set[tuple[int, str]] = set()

    # -- inputs ---------------------------------------------------------------------------

    def on_decision(
        self,
        decision: Mapping[str, Any],
        partition: int,
        offset: int,
        now_ms: int,
        stamp_ms: int | None = None,
    ) -> Outputs:
        """Open the join of a decision (`now_ms`: the processing time, for expiries). A
        Reward settled by events held for it is stamped `stamp_ms`, the decision record's
        own time: processed again after a crash, the record sends the same Reward."""
        out = Outputs()
        key = f"d:{decision['decision_id']}"
        held_key = f"e:{decision['decision_id']}"
        current = self.table.get(key)
        if current is not None:
            if applied(current, DECISIONS, offset):
                self._replay(current, DECISIONS, offset, out)
                self.table.pop(held_key, None)
            else:
                out.verdicts.append("duplicate")
            return out
        held = self.table.get(held_key)
        cfg = self.config
        state, reward, verdicts = open_decision(
            decision,
            held,
            self.spec_for(decision["campaign_id"]),
            partition=partition,
            now_ms=now_ms,
            default_window_ms=cfg.default_window_ms,
            retention_ms=cfg.retention_ms,
            stamp_ms=stamp_ms,
        )
        state["o"] = {DECISIONS: offset}
        if held is not None and EVENTS in held.get("o", {}):
            state["o"][EVENTS] = held["o"][EVENTS]
        out.verdicts.append("opened")
        out.verdicts.extend(f"held:{v}" for v in verdicts)
        if reward is not None:
            state = self._settle(state, partition, DECISIONS, offset, out)
        self.table[key] = state
        if held is not None:
            del self.table[held_key]
        self._push(partition, state, key)
        return out

    def on_event(
        self,
        event: Mapping[str, Any],
        partition: int,
        offset: int,
        now_ms: int,
        stamp_ms: int | None = None,
    ) -> Outputs:
        """Attribute an event to its decision's join, or hold it for the decision. A Reward
        it settles is stamped `stamp_ms` (the event record's own time), as in `on_decision`."""
        out = Outputs()
        decision_id = event["decision_id"]
        key = f"d:{decision_id}"
        current = self.table.get(key)
        if current is None:
            held_key = f"e:{decision_id}"
            held = self.table.get(held_key)
            if applied(held, EVENTS, offset):
                out.replayed = True
                return out
            step = hold_event(
                held,
                event_of(event),
                user_id=event["user_id"],
                partition=partition,
                now_ms=now_ms,
                max_hold_ms=self.config.max_hold_ms,
            )
            out.verdicts.append(step.verdict)
            if step.state is not None:
                state = marked(self._hold_until(step.state, event), EVENTS, offset)
                self.table[held_key] = state
                if held is None:
                    self._push(partition, state, held_key)
            return out
        if applied(current, EVENTS, offset):
            self._replay(current, EVENTS, offset, out)
            return out
        step = apply_event(
            current,
            event_of(event),
            self.spec_for(current["dec"]["campaign_id"]),
            now_ms=now_ms,
            retention_ms=self.config.retention_ms,
            stamp_ms=stamp_ms,
        )
        out.verdicts.append(step.verdict)
        if step.state is None:
            return out
        state = marked(step.state, EVENTS, offset)
        if step.reward is not None:
            state = self._settle(state, partition, EVENTS, offset, out)
            self._push(partition, state, key)
        self.table[key] = state
        return out

    def on_tick(
        self,
        partition: int,
        offset: int,
        now_ms: int | None,
        *,
        sources: Mapping[str, int] | None = None,
        wall_ms: int | None = None,
    ) -> Outputs:
        """Close the windows due by the live watermark `now_ms` (None: not known yet) and, for
        decisions of a source with a clock of its own (a replay), by that clock's watermark
        in `sources`; drop finished joins and held events that expired (live clock). Closed
        joins are stamped `wall_ms` (the tick's own time; default `now_ms`)."""
        out = Outputs()
        heaps = self._heap(partition)
        for key in self._closed_by.get(partition, {}).pop(offset, []):
            state = self.table.get(key)
            if state is not None:
                self._replay(state, EVENTS, offset, out)
        marks = dict(sources or {})
        marks.pop(LIVE, None)
        if now_ms is not None:
            marks[LIVE] = now_ms
        for clock, mark in marks.items():
            heap = heaps.get(clock)
            if heap:
                stamp = wall_ms if wall_ms is not None else mark
                self._close(partition, offset, heap, mark, stamp, out)
        return out

    def on_decisions_mark(self, partition: int, offset: int, clock: str, mark: int) -> Outputs:
        """The decisions of `clock` in this partition are complete up to decided_at `mark`:
        held events that waited on it past their allowance will find no decision."""
        out = Outputs()
        heap = self._heap(partition).get(held_clock(clock))
        if heap:
            self._close(partition, offset, heap, mark, mark, out)
        return out

    def _hold_until(self, held: dict[str, Any], event: Mapping[str, Any]) -> dict[str, Any]:
        if not self.config.decision_watermarks:
            return held
        source = str(event.get("source") or "")
        clock = f"replay:{source[14:]}" if source.startswith("admuse-replay:") else DECIDED
        latest = max(int(e["occurred_at"]) for e in held["events"])
        return {**held, "clock": held_clock(clock), "expires": latest + self.config.max_hold_ms}

    def _close(
        self,
        partition: int,
        offset: int,
        heap: list[tuple[int, str]],
        now_ms: int,
        stamp_ms: int,
        out: Outputs,
    ) -> None:
        cfg = self.config
        keep: list[tuple[dict[str, Any], str]] = []  # closed by this very tick: kept for now
        while heap and heap[0][0] <= now_ms:
            _, key = heapq.heappop(heap)
            state = self.table.get(key)
            if state is None:
                continue
            if state["k"] == "e":
                if state["expires"] <= now_ms:
                    out.unmatched += len(state["events"])
                    del self.table[key]
                elif "clock" in state:  # its expiry moves with each event held: due again later
                    self._push(partition, state, key)
                continue
            if state["status"] == "done":
                if state.get("done_by") == [EVENTS, offset]:
                    # its Reward may be re-sent if this tick is processed again after a crash
                    keep.append((state, key))
                elif state["expires"] <= now_ms:
                    del self.table[key]
                else:
                    self._push(partition, state, key)
                continue
            if applied(state, EVENTS, offset):
                self._replay(state, EVENTS, offset, out)
                self._push(partition, state, key)
                continue
            step = close_due(
                state,
                self.spec_for(state["dec"]["campaign_id"]),
                now_ms=now_ms,
                grace_ms=cfg.close_grace_ms,
                retention_ms=cfg.retention_ms,
                stamp_ms=stamp_ms,
            )
            if step is None:
                self._push(partition, state, key)
                continue
            out.verdicts.append(step.verdict)
            out.closed_due.append(int(state["deadline"]) + cfg.close_grace_ms)
            done = self._settle(marked(step.state, EVENTS, offset), partition, EVENTS, offset, out)
            self.table[key] = done
            keep.append((done, key))
        for state, key in keep:
            self._push(partition, state, key)

    def on_erase(self, user_id: str, partition: int) -> int:
        """Delete every pending, done or held join of this user in this partition."""
        doomed = [k for k, v in self._entries(partition) if v.get("user_id") == user_id]
        for k in doomed:
            del self.table[k]
        return len(doomed)

    # -- bookkeeping ----------------------------------------------------------------------

    def forget(self, partitions: set[int] | None = None) -> None:
        """Drop the local due-time index (partitions revoked or reassigned)."""
        if partitions is None:
            self._heaps.clear()
            self._closed_by.clear()
        for p in partitions or ():
            self._heaps.pop(p, None)
            self._closed_by.pop(p, None)

    def counts(self) -> tuple[int, int]:
        """(pending decisions, held joins) over the whole table."""
        pending = held = 0
        for k, v in self.table.items():
            if k.startswith("d:") and v["status"] == "pending":
                pending += 1
            elif k.startswith("e:"):
                held += 1
        return pending, held

    def partial(self, group: StatsKey, partition: int) -> Partial:
        entry = self.table.get(f"s:{partition}:{group.key}")
        return Partial.from_json(entry["c"] if entry else None)

    def take_dirty(self) -> list[tuple[StatsKey, int, Partial]]:
        """Partials changed since the last call (all of a partition after it is (re)loaded):
        publish them; they are absolute, so publishing one twice is harmless."""
        out = []
        for partition, skey in sorted(self._dirty):
            entry = self.table.get(skey)
            if entry is not None:
                out.append(
                    (StatsKey.from_json(entry["key"]), partition, Partial.from_json(entry["c"]))
                )
        self._dirty.clear()
        return out

    # -- internals ------------------------------------------------------------------------

    def _settle(
        self, state: dict[str, Any], partition: int, tag: str, offset: int, out: Outputs
    ) -> dict[str, Any]:
        """Count a finished join in its stats (before the join itself is written)."""
        reward = state["reward"]
        cfg = self.config
        for group in stats_groups(reward):
            skey = f"s:{partition}:{group.key}"
            entry = self.table.get(skey)
            if not counted(entry, tag, offset, reward["decision_id"]):
                partial = Partial.from_json(entry["c"] if entry else None).add(
                    reward,
                    int(reward["decided_at"]),
                    half_life_s=cfg.half_life_s,
                    window_ms=cfg.stats_window_ms,
                )
                base = entry or {"key": group.to_json(), "p": partition, "o": {}}
                new = {**base, "c": partial.to_json()}
                self.table[skey] = with_count(new, tag, offset, reward["decision_id"])
            self._dirty.add((partition, skey))
        out.rewards.append(reward)
        return {**state, "done_by": [tag, offset]}

    def _replay(self, state: Mapping[str, Any], tag: str, offset: int, out: Outputs) -> None:
        out.replayed = True
        if state["status"] == "done" and state.get("done_by") == [tag, offset]:
            out.rewards.append(state["reward"])
            for group in stats_groups(state["reward"]):
                self._dirty.add((state["p"], f"s:{state['p']}:{group.key}"))

    def _push(self, partition: int, state: Mapping[str, Any], key: str) -> None:
        heaps = self._heaps.get(partition)
        if heaps is not None:
            heapq.heappush(
                heaps.setdefault(clock_of_entry(state), []), (_due(state, self.config), key)
            )

    def _heap(self, partition: int) -> dict[str, list[tuple[int, str]]]:
        """The due-time heaps of a partition, one per clock (rebuilt from the table)."""
        heaps = self._heaps.get(partition)
        if heaps is None:
            heaps, closed_by = {}, {}
            for k, v in self._entries(partition):
                heaps.setdefault(clock_of_entry(v), []).append((_due(v, self.config), k))
                if v.get("done_by") and v["done_by"][0] == EVENTS:
                    closed_by.setdefault(v["done_by"][1], []).append(k)
            for heap in heaps.values():
                heapq.heapify(heap)
            self._heaps[partition] = heaps
            self._closed_by[partition] = closed_by
            prefix = f"s:{partition}:"
            self._dirty.update(
                (partition, k) for k in list(self.table.keys()) if k.startswith(prefix)
            )
        return heaps

    def _entries(self, partition: int) -> Iterator[tuple[str, dict[str, Any]]]:
        for k, v in list(self.table.items()):
            if k[:2] in ("d:", "e:") and v.get("p") == partition:
                yield k, v


def _due(state: Mapping[str, Any], config: JoinConfig) -> int:
    if state["k"] == "e" or state["status"] == "done":
        return int(state["expires"])
    return int(state["deadline"]) + config.close_grace_ms
