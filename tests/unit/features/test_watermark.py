"""The watermark arithmetic, end to end, against a brute-force reference.

Ingestion's claims (`RawClock`), the reader's merge per partition (`PartitionWatermark`, as
the events agent does it) and the least over partitions (`JoinMarks`, as a join partition
does it) are driven through random histories — out-of-order events within the allowed skew,
idle partitions, backlogs, restarts that lose ingestion's memory — and checked against what
is true of the whole history, future records included: a watermark W seen in an output
partition is safe when every record that belongs there with ``occurred_at <= W`` was
forwarded before it. When raw is read to its end, the watermark must also be as far as the
rules allow (the wall clock minus the skew), so quiet spells close windows.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.codec import SchemaRegistry
from services.common.watermark import LIVE, PartitionWatermark, WatermarkCodec
from services.features.watermark import EventsMarks, JoinMarks
from services.ingestion.watermarks import RawClock

T0 = 1_800_000_000_000
CODEC = WatermarkCodec(SchemaRegistry.load())


@dataclass
class Rec:
    ts: int  # raw record timestamp (when it reached the raw topic)
    occurred_at: int
    out: int  # output partition (by user)


op = st.one_of(
    st.tuples(
        st.just("append"),
        st.integers(0, 2),  # raw partition
        # occurred this long before it reached raw ("skew": exactly the allowed skew; some late)
        st.one_of(st.just("skew"), st.integers(0, 1500)),
        st.integers(0, 2),  # output partition
    ),
    st.tuples(st.just("process"), st.integers(0, 2), st.integers(1, 5), st.booleans()),
    st.tuples(st.just("idle")),
    st.tuples(st.just("restart")),
    st.tuples(st.just("wait"), st.integers(1, 3000)),
)


@settings(max_examples=300, deadline=None)
@given(
    ops=st.lists(op, max_size=60),
    raw_n=st.integers(1, 3),
    out_n=st.integers(1, 3),
    skew=st.integers(0, 1000),
)
def test_watermarks_are_safe_and_advance_when_idle(
    ops: list[tuple], raw_n: int, out_n: int, skew: int
) -> None:
    now = T0
    logs: list[list[Rec]] = [[] for _ in range(raw_n)]
    position = [0] * raw_n  # committed read position per raw partition
    forwarded: list[set[int]] = [set() for _ in range(out_n)]  # ids (id = position in `all_`)
    all_: list[Rec] = []
    ids: list[list[int]] = [[] for _ in range(raw_n)]
    clock = RawClock(skew)
    readers = EventsMarks()
    join = JoinMarks(out_n)
    seen: list[tuple[int, int, frozenset[int]]] = []  # (output partition, W, forwarded then)
    stated: dict[int, int] = {}  # brute force: largest claim ever written per raw partition

    def emit() -> None:
        claims = clock.claims().get(LIVE, {})
        if not claims:
            return
        for r, w in claims.items():
            stated[r] = max(stated.get(r, w), w)
        value = CODEC.encode("ingestion-0", raw_n, claims, now)
        for o in range(out_n):  # into every output partition, after the batch's output
            readers.merge(o, CODEC.decode(value))
        marks = readers.marks().get(LIVE, {})
        for o, w in marks.items():
            seen.append((o, w, frozenset(forwarded[o])))
        join.advance(0, {LIVE: marks})

    for step in ops:
        kind = step[0]
        if kind == "append":
            _, r, before, o = step
            if r < raw_n:
                rec = Rec(now, now - (skew if before == "skew" else before), o % out_n)
                ids[r].append(len(all_))
                all_.append(rec)
                logs[r].append(rec)
        elif kind == "process":
            _, r, k, write = step
            if r < raw_n and position[r] < len(logs[r]):
                batch = ids[r][position[r] : position[r] + k]
                for i in batch:
                    forwarded[all_[i].out].add(i)
                position[r] += len(batch)
                clock.read({r: max(all_[i].ts for i in batch)}, now)
                if write:  # claims are written with some batches only (the interval)
                    emit()
        elif kind == "idle":
            clock.caught_up([r for r in range(raw_n) if position[r] >= len(logs[r])], now)
            emit()
        elif kind == "restart":
            clock = RawClock(skew)  # ingestion's memory is gone; Kafka's offsets are not
        else:
            now += step[1]

    # Safety, against the whole history (records appended after a watermark included): every
    # record that kept the skew rule and belongs in a partition precedes any watermark there
    # that covers its occurred_at.
    for o, w, then in seen:
        for i, rec in enumerate(all_):
            if rec.out == o and rec.occurred_at <= w and rec.ts - rec.occurred_at <= skew:
                assert i in then, (o, w, rec)

    # The merged values are exactly the brute-force ones: per partition the least over raw
    # partitions of the largest claim written, unknown until each raw partition has one.
    expected = min(stated.values()) if len(stated) == raw_n else None
    marks = readers.marks().get(LIVE, {})
    for o in range(out_n):
        assert marks.get(o) == expected
    assert join.value(0) == (expected if seen else None)

    # Liveness: once raw is read to its end and ingestion says so, windows may close up to
    # the wall clock minus the skew, whatever happened before.
    for r in range(raw_n):
        position[r] = len(logs[r])
        for i in ids[r]:
            forwarded[all_[i].out].add(i)
    clock.caught_up(range(raw_n), now)
    emit()
    assert join.value(0) == now - skew - 1


def test_a_partition_holds_until_every_raw_partition_is_claimed() -> None:
    part = PartitionWatermark()
    part.merge(CODEC.decode(CODEC.encode("a", 2, {0: T0}, T0)))
    assert part.value is None  # raw partition 1 unclaimed: its backlog may still come
    part.merge(CODEC.decode(CODEC.encode("b", 2, {1: T0 + 5}, T0)))
    assert part.value == T0
    part.merge(CODEC.decode(CODEC.encode("a", 2, {0: T0 - 100}, T0)))  # a restarted owner
    assert part.value == T0  # claims only grow: the earlier statement stays true


def test_watermark_records_are_told_from_data() -> None:
    registry = SchemaRegistry.load()
    event = registry.codec("ErasureRequest").encode(
        {"request_id": "r", "user_id": "u", "requested_at": T0, "reason": None}
    )
    assert not CODEC.is_watermark(event)
    assert not CODEC.is_watermark(None)
    assert not CODEC.is_watermark(b"\xc3")
    assert CODEC.is_watermark(CODEC.encode("x", 1, {0: T0}, T0))
