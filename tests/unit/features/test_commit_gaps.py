"""The features worker's consumer guards (services/features/commit_gaps.py), on faust's own
consumer state: commits past a never-delivered hole at the head of the acknowledged offsets —
never past an offset delivered since the seek — and no stream record delivered from a fetch
issued before faust's seek of the current assignment."""

from __future__ import annotations

import asyncio
import contextlib
import types
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import pytest
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from intervaltree import IntervalTree

from services.features.commit_gaps import GapSafeConsumer
from services.features.faust_compat import FeaturesApp

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
        self._first_delivered: dict[TP, int] = {}

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


def test_faust_keeps_the_fields_and_hooks_the_adapter_uses() -> None:
    import inspect

    from faust.transport.consumer import Consumer

    init = inspect.getsource(Consumer.__init__)
    for name in ("_acked", "_committed_offset", "_unacked_messages"):
        assert f"self.{name} = " in init, name
    for hook in ("perform_seek", "on_partitions_revoked", "on_partitions_assigned", "ack"):
        assert hook in vars(Consumer), hook
    # faust's recovery resumes the stream partitions right before it seeks them
    from faust.tables.recovery import Recovery

    resume = inspect.getsource(Recovery._resume_streams)
    assert resume.index("consumer.resume_partitions(") < resume.index("consumer.perform_seek()")
    # and a stream skips-and-acks what it holds while the flow is stopped or stale
    from faust.streams import Stream

    assert "message.generation_id != self.app.consumer_generation_id" in inspect.getsource(
        Stream._py_aiter
    )


def test_faust_commits_up_to_the_first_break_in_the_acknowledged_offsets(
    consumer: _Consumer,
) -> None:
    """faust's own rule, which the guards keep sound: a break is never committed past (if a
    faust upgrade changes this, re-check commit_gaps.py); repeated acks are dropped."""
    consumer._committed_offset[TPX] = 909
    consumer._acked[TPX] = [909, 910, 912, 913]
    assert consumer._new_offset(TPX) == 911
    consumer._committed_offset[TPX] = 911
    consumer._acked[TPX] = [911, 911, 912]
    assert consumer._new_offset(TPX) == 913


@dataclass(eq=False)
class _Delivered:
    tp: TP
    offset: int
    generation_id: int
    acked: bool = False
    refcount: int = 0

    @property
    def topic(self) -> str:
        return self.tp.topic


def test_acknowledgements_count_only_after_the_seek_of_the_current_assignment() -> None:
    """A stream skips and acks what it holds when a rebalance starts or ends: recording those
    would commit records no agent processed."""
    from faust.transport.consumer import Consumer

    c: Any = type("C", (), {})()
    c.__dict__.update(
        _sought=True, _acked=defaultdict(list), _acked_index=defaultdict(set),
        _committed_offset={TPX: 40}, _unacked_messages=set(), _n_acked=0, _waiting_for_ack=None,
        app=type("A", (), {"consumer_generation_id": 3})(),
    )  # fmt: skip
    c.app.topics = type("T", (), {"acks_enabled_for": staticmethod(lambda topic: True)})()
    assert Consumer.ack.__qualname__ == "Consumer.ack"
    processed = _Delivered(TPX, 40, generation_id=3)
    assert GapSafeConsumer.ack(c, processed) is True
    stale = _Delivered(TPX, 41, generation_id=2)  # fetched before the last rebalance
    c._unacked_messages.add(stale)
    assert GapSafeConsumer.ack(c, stale) is False
    assert stale.acked and stale not in c._unacked_messages  # faust may stop waiting on it
    c._sought = False  # a rebalance under way: the stream skips what it holds
    assert GapSafeConsumer.ack(c, _Delivered(TPX, 42, generation_id=3)) is False
    assert c._acked[TPX] == [40]


async def test_stream_partitions_stay_paused_until_faust_has_sought_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """faust resumes fetching (to replay changelogs) before it seeks the stream partitions,
    and does not pause the newly assigned ones: they must not be fetched until the seek.
    faust's own partition bookkeeping runs here; only its rebalance callbacks and the seek
    itself are stubbed."""
    from faust.transport.consumer import Consumer

    changelog, kept, new = TP("app-join-changelog", 0), TPX, TP("admuse.events", 1)
    c: Any = type("C", (), {})()
    c.__dict__.update(
        _sought=True, _deferred=set(), flow_active=True,
        _paused_partitions=set(), _active_partitions=None,
        _committed_offset={kept: 85}, app=type("A", (), {})(),
    )  # fmt: skip
    c.app.tables = type("T", (), {"changelog_topics": {changelog.topic}})()
    c.app._start_span_from_rebalancing = lambda name: contextlib.nullcontext()
    c.app.on_rebalance_return = lambda: None
    c.diag = type("D", (), {"set_flag": lambda *a: None, "unset_flag": lambda *a: None})()
    for name in ("_get_active_partitions", "_set_active_tps"):
        setattr(c, name, types.MethodType(getattr(Consumer, name), c))
    for name in ("_is_stream", "resume_partitions"):
        setattr(c, name, types.MethodType(getattr(GapSafeConsumer, name), c))
    assignment = {kept, changelog}
    c.assignment = lambda: set(assignment)
    sought_to_beginning: list[Any] = []

    async def beginning(*tps: Any) -> None:
        sought_to_beginning.extend(tps)

    c._thread = type("Th", (), {"seek_to_beginning": staticmethod(beginning)})()
    c._on_partitions_assigned = lambda assigned, generation_id: asyncio.sleep(0)

    async def revoke(self: Any, revoked: Any) -> None:
        Consumer.pause_partitions(self, revoked)  # what faust does with a kept assignment

    async def seek(self: Any) -> None:
        return None

    monkeypatch.setattr(faust_aiokafka.Consumer, "on_partitions_revoked", revoke)
    monkeypatch.setattr(faust_aiokafka.Consumer, "perform_seek", seek)
    # a rebalance: `kept` stays, `new` comes (a dead peer's), the changelog is replayed
    await GapSafeConsumer.on_partitions_revoked(c, {kept, changelog})
    assignment.add(new)
    await GapSafeConsumer.on_partitions_assigned(c, {kept, new, changelog}, 2)
    assert not c._get_active_partitions() & {kept, new}  # faust would fetch `new` at once
    c.resume_partitions({changelog})  # recovery reads the changelog
    c.resume_partitions({kept, new})  # faust's _resume_streams, just before its seek
    assert c._get_active_partitions() == {changelog}
    await GapSafeConsumer.perform_seek(c)
    assert c._get_active_partitions() == {kept, new, changelog}
    assert [(tp.topic, tp.partition) for tp in sought_to_beginning] == [(new.topic, 1)]
    c.resume_partitions({changelog})  # after the seek, resumes go through at once
    assert c._sought and not c._deferred


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
