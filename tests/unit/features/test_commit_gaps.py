"""Commits past a never-delivered hole at the head of the acknowledged offsets
(services/features/commit_gaps.py), on faust's own consumer of the features app — and never
past an offset that may still be delivered or is still being processed."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Literal

import pytest
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from intervaltree import IntervalTree

from services.features.commit_gaps import GapSafeConsumer
from services.features.faust_compat import FeaturesApp
from tests.polling import eventually

TPX = TP("admuse.events", 0)


@dataclass(frozen=True)
class _Msg:
    tp: TP
    offset: int


class _Consumer:
    """The state faust's consumer keeps per partition (faust's own fields, by name), with
    `GapSafeConsumer`'s and faust's `_new_offset` run on it unbound: constructing the real
    consumer starts its thread and event loop."""

    def __init__(self) -> None:
        self._acked: dict[TP, list[int]] = defaultdict(list)
        self._acked_index: dict[TP, set[int]] = defaultdict(set)
        self._gap: dict[TP, IntervalTree] = defaultdict(IntervalTree)
        self._committed_offset: dict[TP, int | None] = defaultdict(lambda: None)
        self._read_offset: dict[TP, int | None] = defaultdict(lambda: None)
        self._unacked_messages: set[Any] = set()

    def _new_offset(self, tp: TP) -> int | None:
        return GapSafeConsumer._new_offset(self, tp)  # type: ignore[arg-type]


@pytest.fixture
def consumer() -> _Consumer:
    return _Consumer()


async def test_the_app_consumes_with_the_gap_safe_consumer_and_produces_paced() -> None:
    app = FeaturesApp("gaps-test", broker="kafka://127.0.0.1:1", store="memory://")
    transport = app._new_transport()
    assert transport.Consumer is GapSafeConsumer
    producer = transport.create_producer()
    inner = producer._new_producer()
    assert inner.client._metadata_update.__qualname__.startswith("pace_metadata_updates")
    await inner.stop()


def test_faust_keeps_the_fields_the_adapter_reads() -> None:
    import inspect

    from faust.transport.consumer import Consumer

    init = inspect.getsource(Consumer.__init__)
    for name in ("_acked", "_acked_index", "_gap", "_committed_offset", "_read_offset",
                 "_unacked_messages"):  # fmt: skip
        assert f"self.{name} = " in init, name


def _state(c: _Consumer, committed: int, acked: list[int], read: int | None) -> None:
    c._committed_offset[TPX] = committed
    c._acked[TPX] = list(acked)
    c._acked_index[TPX] = set(acked)
    if read is None:
        c._read_offset.pop(TPX, None)
    else:
        c._read_offset[TPX] = read


def test_faust_alone_never_commits_past_a_head_hole_of_two(consumer: _Consumer) -> None:
    """The stall itself (if a faust upgrade fixes it, this fails: re-check commit_gaps.py)."""
    _state(consumer, 909, [911, 912, 913], read=913)
    assert faust_aiokafka.Consumer._new_offset(consumer, TPX) is None  # type: ignore[arg-type]
    assert consumer._acked[TPX] == [911, 912, 913]  # and they pile up


def test_a_hole_read_past_and_not_in_process_is_committed_past(
    consumer: _Consumer,
) -> None:
    _state(consumer, 909, [911, 912, 913, 915], read=915)
    assert consumer._new_offset(TPX) == 914
    _state(consumer, 909, [912, 912, 913], read=913)  # a repeated ack as well
    assert consumer._new_offset(TPX) == 914


def test_nothing_is_skipped_that_may_still_come_or_is_still_processed(
    consumer: _Consumer,
) -> None:
    _state(consumer, 909, [911, 912], read=905)  # sought back: 909-910 may still come
    assert consumer._new_offset(TPX) is None
    _state(consumer, 909, [911, 912], read=None)
    assert consumer._new_offset(TPX) is None
    _state(consumer, 909, [911, 912], read=912)
    processing = _Msg(TPX, 910)
    consumer._unacked_messages.add(processing)  # type: ignore[arg-type]
    assert consumer._new_offset(TPX) is None
    consumer._unacked_messages.discard(processing)  # type: ignore[arg-type]
    assert consumer._new_offset(TPX) == 913  # done: now it may go
    _state(consumer, 909, [910, 911], read=911)  # a hole of one: faust's own rule
    assert consumer._new_offset(TPX) == 912


def test_the_worker_consumer_reads_committed_records_only() -> None:
    """`ReadCommittedConsumerThread` sets aiokafka's isolation level after construction: this
    fails if aiokafka stops reading it at start() or faust renames the factory it wraps.
    (The behaviour itself: tests/integration/test_features_attribution.py, aborted click.)"""
    import inspect

    from aiokafka import AIOKafkaConsumer

    from services.features.commit_gaps import ReadCommittedConsumerThread

    assert "isolation_level=self._isolation_level" in inspect.getsource(AIOKafkaConsumer.start)
    assert "_create_worker_consumer" in vars(faust_aiokafka.AIOKafkaConsumerThread)
    assert "_new_consumer_thread" in vars(faust_aiokafka.Consumer)
    assert issubclass(ReadCommittedConsumerThread, faust_aiokafka.AIOKafkaConsumerThread)


async def test_a_fetch_reads_the_partitions_active_when_asked_not_the_live_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """faust empties its live set of active partitions while a fetch waits in the consumer
    thread; the thread must keep fetching what was asked for, and an empty ask fetches
    nothing (aiokafka reads an empty set as every partition)."""
    from services.features.commit_gaps import ReadCommittedConsumerThread

    live = {TPX, TP("admuse.decisions", 0)}
    seen: list[Any] = []

    async def faust_getmany(self: Any, active: Any, _wait: float) -> dict[Any, Any]:
        live.clear()  # faust pauses every partition while the fetch waits
        seen.append(active)
        return {}

    monkeypatch.setattr(faust_aiokafka.AIOKafkaConsumerThread, "getmany", faust_getmany)
    thread = _thread()
    await ReadCommittedConsumerThread.getmany(thread, live, 1.0)
    assert seen == [frozenset({TPX, TP("admuse.decisions", 0)})]
    assert await ReadCommittedConsumerThread.getmany(thread, set(), 1.0) == {}
    assert len(seen) == 1, "an empty ask never reaches aiokafka"
    await ReadCommittedConsumerThread.getmany(thread, None, 1.0)
    assert seen[-1] is None, "None (a client-only app: every partition) is passed on"


class _WatchedEvent(asyncio.Event):
    """An event that counts the waits begun on it (a condition a test can poll for)."""

    waits = 0

    async def wait(self) -> Literal[True]:
        self.waits += 1
        return await super().wait()


class _Seeker:
    """`GapSafeConsumer`'s resume/seek bookkeeping on the state its __init__ sets (the real
    consumer starts a thread and an event loop), with faust's halves patched out per test."""

    resume_partitions = GapSafeConsumer.resume_partitions
    perform_seek = GapSafeConsumer.perform_seek
    wait_for_seek = GapSafeConsumer.wait_for_seek
    _remember_committed = GapSafeConsumer._remember_committed

    def __init__(self, changelogs: frozenset[TP]) -> None:
        self._committed_offset: dict[TP, int | None] = {}
        self.known_committed: dict[TP, int] = {}
        self.unseeked: set[TP] = set()
        self._sought = _WatchedEvent()
        self._sought.set()
        self._changelogs = changelogs

    def _is_changelog_tp(self, tp: TP) -> bool:
        return tp in self._changelogs


def _thread(changelogs: frozenset[TP] = frozenset()) -> Any:
    """What `ReadCommittedConsumerThread.getmany` reads: its consumer."""
    return SimpleNamespace(consumer=_Seeker(changelogs))


async def test_a_resumed_stream_partition_is_fetched_only_after_its_seek(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """faust resumes stream partitions, then awaits the seek to their committed offsets; a
    fetch in between would read from a position past records it dropped while they were
    paused. Changelog partitions (recovery reads them from its own offsets) are not held."""
    from services.features.commit_gaps import ReadCommittedConsumerThread

    changelog = TP("admuse-features-joins-changelog", 0)
    other = TP("admuse.decisions", 0)
    thread = _thread(frozenset({changelog}))
    consumer = thread.consumer
    fetched: list[Any] = []

    async def faust_getmany(self: Any, active: Any, _wait: float) -> dict[Any, Any]:
        fetched.append(active)
        return {}

    async def faust_seek(self: Any) -> None:
        self.resume_partitions([other])  # resumed while the seek runs

    monkeypatch.setattr(faust_aiokafka.AIOKafkaConsumerThread, "getmany", faust_getmany)
    monkeypatch.setattr(faust_aiokafka.Consumer, "resume_partitions", lambda self, tps: None)
    monkeypatch.setattr(faust_aiokafka.Consumer, "perform_seek", faust_seek)
    live = {TPX, other, changelog}
    consumer.resume_partitions([TPX, changelog])
    assert consumer.unseeked == {TPX}
    await ReadCommittedConsumerThread.getmany(thread, live, 1.0)
    assert fetched == [frozenset({other, changelog})]
    await consumer.perform_seek()
    assert consumer.unseeked == {other}, "resumed after the seek began: the next one frees it"
    await ReadCommittedConsumerThread.getmany(thread, live, 1.0)
    assert fetched[-1] == frozenset({TPX, changelog})


async def test_a_fetch_of_only_unsought_partitions_waits_for_the_seek(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While every active partition waits for its seek (a broker away holds the seek), a
    fetch waits for the seek, at most its timeout, as an empty fetch does: returning at once
    spun a core."""
    from services.features.commit_gaps import ReadCommittedConsumerThread

    async def no_fetch(self: Any, active: Any, _wait: float) -> dict[Any, Any]:
        raise AssertionError(f"fetched {active} before its seek")

    async def faust_seek(self: Any) -> None:
        return None

    monkeypatch.setattr(faust_aiokafka.AIOKafkaConsumerThread, "getmany", no_fetch)
    monkeypatch.setattr(faust_aiokafka.Consumer, "resume_partitions", lambda self, tps: None)
    monkeypatch.setattr(faust_aiokafka.Consumer, "perform_seek", faust_seek)
    thread = _thread()
    thread.consumer.resume_partitions([TPX])
    fetch = asyncio.create_task(ReadCommittedConsumerThread.getmany(thread, {TPX}, 60.0))
    await eventually(
        lambda: fetch.done() or thread.consumer._sought.waits == 1, 5.0, "the fetch waits"
    )
    assert not fetch.done(), "a fetch with nothing it may read returned at once"
    await thread.consumer.perform_seek()
    assert await asyncio.wait_for(fetch, 5.0) == {}, "the seek ends the wait"
    thread.consumer.resume_partitions([TPX])
    assert await ReadCommittedConsumerThread.getmany(thread, {TPX}, 0.01) == {}, "bounded"


def test_faust_still_resumes_stream_partitions_only_before_a_seek() -> None:
    """`unseeked` is freed by `perform_seek`: this fails if faust resumes stream partitions
    anywhere without seeking them next (they would never be fetched again)."""
    import inspect

    from faust.tables.recovery import Recovery

    for method in (Recovery._resume_streams, Recovery.on_recovery_completed):
        src = inspect.getsource(method)
        resume = src.index("consumer.resume_partitions(")
        assert src.index("consumer.perform_seek()", resume) > resume
    source = inspect.getsource(Recovery)
    assert source.count("resume_partitions)(") == 3, "the changelog resumes in recovery"
    assert source.count("consumer.resume_partitions(") == 2


class _Kafka:
    """aiokafka's consumer as `seek_every_stream_partition` drives it: the committed offsets
    its `seek_to_committed` reports, and every seek made."""

    def __init__(self, committed: dict[TP, int | None]) -> None:
        self.committed = committed
        self.seeks: list[tuple[str, Any]] = []

    async def seek_to_committed(self) -> dict[TP, int | None]:
        for tp, at in self.committed.items():
            if at and at > 0:  # aiokafka's own rule (pinned below)
                self.seeks.append(("to", (tp, at)))
        return dict(self.committed)

    def seek(self, tp: TP, offset: int) -> None:
        self.seeks.append(("to", (tp, offset)))

    async def seek_to_beginning(self, *tps: TP) -> None:
        self.seeks.append(("beginning", set(tps)))

    async def seek_to_end(self, *tps: TP) -> None:
        self.seeks.append(("end", set(tps)))


@pytest.mark.parametrize("reset", ["earliest", "latest"])
async def test_every_stream_partition_is_sought_even_with_nothing_committed(reset: str) -> None:
    """A partition whose group committed nothing (or 0) is sought where the reset policy
    starts, not left past records faust consumed and dropped; changelogs are recovery's."""
    from services.features.commit_gaps import seek_every_stream_partition

    new, zero, changelog = TP("admuse.events", 1), TP("admuse.events", 2), TP("j-changelog", 0)
    kafka = _Kafka({TPX: 7, new: None, zero: 0, changelog: None})
    committed = await seek_every_stream_partition(kafka, lambda tp: tp == changelog, reset)
    assert committed == {TPX: 7, new: None, zero: 0, changelog: None}, "faust reads them"
    where = "end" if reset == "latest" else "beginning"
    assert sorted(kafka.seeks, key=str) == sorted(
        [("to", (TPX, 7)), ("to", (zero, 0)), (where, {new})], key=str
    )


async def test_a_partition_reported_uncommitted_after_a_commit_goes_back_to_that_commit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The broker may report no committed offset for a partition the worker saw committed
    (after a restart); it is sought to the commit the worker saw, not replayed from the
    start. The worker remembers commits across revocations (faust forgets them)."""
    from services.features.commit_gaps import seek_every_stream_partition

    other = TP("admuse.events", 1)
    kafka = _Kafka({TPX: None, other: None})
    committed = await seek_every_stream_partition(kafka, lambda tp: False, "earliest", {TPX: 40})
    assert committed == {TPX: 40, other: None}
    assert sorted(kafka.seeks, key=str) == sorted(
        [("to", (TPX, 40)), ("beginning", {other})], key=str
    )

    async def faust_revoked(self: Any, revoked: set[Any]) -> None:
        self._committed_offset.clear()  # what faust does with a revoked partition's offsets

    monkeypatch.setattr(faust_aiokafka.Consumer, "on_partitions_revoked", faust_revoked)
    consumer = _Seeker(frozenset())
    consumer._committed_offset.update({TPX: 40, other: None})
    await GapSafeConsumer.on_partitions_revoked(consumer, {TPX, other})  # type: ignore[arg-type]
    assert consumer._committed_offset == {} and consumer.known_committed == {TPX: 40}


def test_aiokafka_still_leaves_uncommitted_partitions_unsought() -> None:
    """Why `seek_every_stream_partition`: aiokafka seeks only offsets above 0, and faust's
    perform_seek reaches the consumer thread's `seek_to_committed`. Fails when either changes."""
    import inspect

    from aiokafka import AIOKafkaConsumer
    from faust.transport.consumer import Consumer, ThreadDelegateConsumer

    from services.features.commit_gaps import ReadCommittedConsumerThread

    assert "if offset and offset > 0:" in inspect.getsource(AIOKafkaConsumer.seek_to_committed)
    assert "await self.seek_to_committed()" in inspect.getsource(Consumer.perform_seek)
    assert "self._thread.seek_to_committed()" in inspect.getsource(
        ThreadDelegateConsumer.seek_to_committed
    )
    assert "seek_to_committed" in vars(ReadCommittedConsumerThread)


def test_faust_and_aiokafka_still_share_the_live_set_and_read_empty_as_all() -> None:
    """Why the snapshot: faust passes the very set it pauses partitions in, and aiokafka
    returns every partition's records for an empty one. This fails when either changes."""
    import inspect

    from aiokafka.consumer.fetcher import Fetcher
    from faust.transport.consumer import Consumer

    assert "active_partitions = self._get_active_partitions()" in inspect.getsource(
        Consumer._wait_next_records
    )
    assert "return tps" in inspect.getsource(Consumer._get_active_partitions)
    assert "difference_update" in inspect.getsource(Consumer.pause_partitions)
    assert "if partitions and tp not in partitions" in inspect.getsource(Fetcher.fetched_records)
    assert "active_partitions," in inspect.getsource(faust_aiokafka.AIOKafkaConsumerThread.getmany)
