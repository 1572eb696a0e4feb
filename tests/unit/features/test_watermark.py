"""Ticks never run ahead of the events read: the watermark."""

from __future__ import annotations

from services.features.watermark import EventClock

NOW = 1_800_000_000_000


def test_waits_for_partitions_that_delivered_nothing_for_idle_seconds() -> None:
    clock = EventClock(idle_s=1.0)
    clock.assigned(["p0", "p1"])
    hw = {"p0": 10}.get  # p1's high watermark not known yet
    assert clock.watermark(NOW, 100.0, hw) is None  # first asked: give the agent time
    clock.observe("p0", 9, NOW - 5000)  # p0 read to its end
    assert clock.watermark(NOW, 100.5, hw) is None
    assert clock.watermark(NOW, 101.0, hw) == NOW  # p1 idle for 1 s: nothing to read


def test_empty_or_settled_partitions_do_not_hold_windows() -> None:
    clock = EventClock(idle_s=1.0)
    clock.assigned(["p0", "p1"])
    hw = {"p0": 0, "p1": 7}.get
    assert clock.watermark(NOW, 100.0, hw) is None  # p1: a backlog, as far as anyone knows
    clock.settled(["p1", "p9"])  # Kafka: nothing to read on p1 (p9 is not ours)
    assert clock.watermark(NOW, 100.1, hw) == NOW
    clock.revoked(["p1"])
    clock.assigned(["p1"])  # settled again only when asked again
    assert clock.watermark(NOW, 100.2, hw) is None


def test_a_backlog_not_yet_delivered_holds_every_window() -> None:
    # After a crash the worker resumes p1 at offset 3 of 7: its clicks may still close windows
    # on time only if no window closes before they are read, however long delivery takes.
    clock = EventClock(idle_s=1.0, backlog_s=60.0)
    clock.assigned(["p0", "p1"])
    clock.observe("p0", 4, NOW - 10)
    hw = {"p0": 5, "p1": 7}.get
    clock.settled(["p0"])  # p0 has progress anyway; p1 has a backlog (not settled)
    assert clock.watermark(NOW, 100.0, hw) is None
    assert clock.watermark(NOW, 130.0, hw) is None  # 30 s later: still held
    clock.observe("p1", 3, NOW - 4000)  # first backlog event handled
    assert clock.watermark(NOW, 130.5, hw) == NOW - 4000
    clock.observe("p1", 6, NOW - 20)
    assert clock.watermark(NOW, 131.0, hw) == NOW


def test_a_backlog_never_delivered_stops_holding_after_backlog_s() -> None:
    clock = EventClock(idle_s=1.0, backlog_s=60.0)
    clock.assigned(["p0"])
    hw = {"p0": 9}.get
    assert clock.watermark(NOW, 100.0, hw) is None
    assert clock.watermark(NOW, 160.0, hw) == NOW


def test_lagging_partition_holds_the_watermark_at_its_last_event() -> None:
    clock = EventClock(idle_s=0.0)
    clock.assigned(["p0", "p1"])
    clock.observe("p0", 3, NOW - 7000)  # 4 of 10 read
    clock.observe("p1", 4, NOW - 100)  # read to the end
    hw = {"p0": 10, "p1": 5}.get
    assert clock.watermark(NOW, 0.0, hw) == NOW - 7000
    clock.observe("p0", 9, NOW - 50)
    assert clock.watermark(NOW, 0.0, hw) == NOW


def test_unknown_highwater_counts_as_lagging_and_revoked_partitions_are_forgotten() -> None:
    clock = EventClock(idle_s=0.0)
    clock.assigned(["p0"])
    clock.observe("p0", 0, NOW - 300)
    assert clock.watermark(NOW, 0.0, lambda _tp: None) == NOW - 300
    clock.revoked(["p0"])
    assert clock.watermark(NOW, 0.0, lambda _tp: None) == NOW


def test_no_window_closes_while_some_events_partitions_are_not_ours() -> None:
    # After a crash the dead worker keeps half the partitions until its session times out;
    # clicks there are read by nobody, and any window may be waiting for one of them.
    clock = EventClock(idle_s=1.0, backlog_s=60.0, partitions=4)
    hw = {"p0": 0, "p1": 0, "p2": 0, "p3": 0}.get
    assert clock.watermark(NOW, 100.0, hw) is None  # nothing assigned yet
    clock.assigned(["p0", "p1"])
    assert clock.watermark(NOW, 105.0, hw) is None
    clock.assigned(["p2", "p3"])  # the dead member's session ended: all ours
    assert clock.watermark(NOW, 106.0, hw) == NOW
    clock.revoked(["p3"])  # shared for good (several workers): held for backlog_s, then on
    assert clock.watermark(NOW, 107.0, hw) is None
    assert clock.watermark(NOW, 166.9, hw) is None
    assert clock.watermark(NOW, 167.0, hw) == NOW
    clock.assigned(["p3"])
    clock.revoked(["p3"])  # a new partial spell (even between two ticks) holds again
    assert clock.watermark(NOW, 168.0, hw) is None
