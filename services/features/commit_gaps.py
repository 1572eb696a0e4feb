"""Offsets faust can commit past: a gap at the head of the acknowledged offsets.

faust (0.15.3) commits a partition up to the first break in the offsets its agents
acknowledged, and records the offsets it never receives — transaction markers and aborted
records of a transactional input such as admuse.events — as gaps as it reads. When the
acknowledged offsets start two or more past the committed one and no gap was recorded for
the hole (seen after a paused worker lost and regained its partitions), faust returns "no
new offset" for that partition from then on: it never commits it again, its acknowledged
offsets pile up in memory, and every restart replays the topic from that point (a 20-cycle
fault run replayed from the first pause: rewards an hour late). faust-streaming issues
#606 and robinhood/faust #625 describe the same family.

`GapSafeConsumer._new_offset` closes such a hole before faust's own rule runs, and only when
it is certain the hole was never delivered: the consumer has read past the head since its
last seek, and no message of the partition below the head is still being processed (faust
delivers a partition in order and tracks every delivered message until it is acknowledged).
Repeated acknowledgements are dropped as well (robinhood/faust #625).

Caveat (found after it shipped, left open in #13): faust tracks a message as "being processed"
only once a stream takes it from its queue, so a record fetched but still queued below the
head is not seen by the second condition. Records reached the head out of order only when
partitions moved to a running worker, which the worker no longer lets happen: the consumer
below restarts it instead (`services/features/rejoin.py`).

Positions. faust drops records it fetched for a partition it paused meanwhile (a rebalance)
and relies on its seek to the committed offsets to read them again. The consumer thread
fetches the partitions active when asked, never a resumed partition before that seek, and
seeks every stream partition, also one whose group has committed nothing yet
(`seek_every_stream_partition`): a record is never consumed past without being delivered.

The same transport makes the worker read committed records only: faust's consumer reads
uncommitted ones unless the app itself runs exactly-once, so it would join clicks — and
advance the event clock on watermarks — that ingestion's aborted transactions never
published (`ReadCommittedConsumerThread`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka

from services.common.kafka_pacing import pace_metadata_updates
from services.common.logging import get_logger, rate_limited
from services.features.rejoin import HeldPartitions, request_rejoin

__all__ = [
    "GapSafeConsumer",
    "GapSafeTransport",
    "PacedProducer",
    "ReadCommittedConsumerThread",
    "close_head_gap",
    "seek_every_stream_partition",
]

_log = rate_limited(get_logger(__name__), 30.0)


def close_head_gap(consumer: Any, tp: Any) -> bool:
    """Record the never-delivered hole before `tp`'s first acknowledged offset as a gap;
    also drops repeated acknowledgements. True when a hole was closed."""
    acked: list[int] = consumer._acked[tp]
    if not acked:
        return False
    unique = sorted(set(acked))
    if len(unique) != len(acked):
        acked[:] = unique
    committed = consumer._committed_offset.get(tp)
    head = min(acked)
    if committed is None or head - committed < 2:
        return False  # faust's own rule handles a hole of one (the committed offset itself)
    read = consumer._read_offset.get(tp)
    if read is None or read < head:
        return False  # not read past the hole since the last seek: it may still come
    if any(m.tp == tp and m.offset < head for m in list(consumer._unacked_messages)):
        return False  # something below the head is still being processed
    consumer._gap[tp].addi(committed, head)
    return True


class ReadCommittedConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):  # type: ignore[misc]
    """faust's consumer thread whose Kafka consumer reads committed records only, and fetches
    only the partitions that were active when the fetch was asked for."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer(self, transport)
        consumer._isolation_level = "read_committed"  # read by its fetcher at start()
        return consumer

    async def getmany(
        self,
        active_partitions: set[Any] | None,
        timeout: float,  # noqa: ASYNC109 - faust's signature
    ) -> Any:
        """faust hands the consumer thread its *live* set of active partitions, and pauses
        partitions (empties the set) during recovery and rebalances while the fetch waits in
        the thread. aiokafka's `fetched_records` reads an empty set as "every partition": it
        then consumed the buffered records of paused partitions too — a restarted worker's
        admuse.events from its committed offset up to the tail — and faust dropped them as
        not active. The partitions were read on from the tail before faust's seek took them
        back: a watermark among them closed windows early and 45 clicks became `timeout`
        (crash-loop kill test, bench/RESULTS.md). A snapshot of the set fetches only what
        was active when asked; an empty one fetches nothing. A stream partition resumed
        and not yet sought to its committed offset (`GapSafeConsumer.unseeked`) is not
        fetched either: its position may lie past records faust dropped."""
        if active_partitions is not None:
            asked = frozenset(active_partitions)
            active_partitions = asked - self.consumer.unseeked
            if not active_partitions:
                if asked:  # all wait for their seek: wait for it, as an empty fetch waits
                    await self.consumer.wait_for_seek(timeout)
                return {}
        return await faust_aiokafka.AIOKafkaConsumerThread.getmany(self, active_partitions, timeout)

    async def seek_to_committed(self) -> Mapping[Any, int | None]:
        return await self.call_thread(  # type: ignore[no-any-return]
            seek_every_stream_partition,
            self._ensure_consumer(),
            self.consumer._is_changelog_tp,
            self.app.conf.consumer_auto_offset_reset,
            dict(self.consumer.known_committed),
        )


async def seek_every_stream_partition(
    consumer: Any,
    is_changelog: Callable[[Any], bool],
    reset: str,
    known: Mapping[Any, int] | None = None,
) -> Mapping[Any, int | None]:
    """aiokafka's `seek_to_committed` seeks only partitions whose group committed an offset
    above 0: one that committed nothing (a new group, or the first seconds of a worker) or 0
    stays where its position was — past any records consumed and then dropped by faust while
    paused — so faust's "seek to committed" never brought them back, and the offsets after
    them were committed past them (a click lost at offset 1 of the repartition topic,
    crash-loop kill test). Every stream partition is sought: to its committed offset, or
    where the reset policy starts a group that committed nothing. Changelog partitions are
    left to recovery, which seeks them to its own offsets.

    `known`: offsets this worker saw committed before (`GapSafeConsumer.known_committed`). A
    partition the broker reports with nothing committed although the worker saw a commit
    (the offset fetch right after a broker restart: one 20-cycle fault run replayed every
    Reward once from the start of the topics) is sought to that offset, not to the start."""
    known = known or {}
    committed = dict(await consumer.seek_to_committed())
    never = []
    for tp, at in committed.items():
        if is_changelog(tp) or (at is not None and at > 0):
            continue
        if at is None and known.get(tp):
            committed[tp] = known[tp]
            consumer.seek(tp, committed[tp])
        elif at is None:
            never.append(tp)
        else:
            consumer.seek(tp, 0)
    if never:
        _log.warning("seek_uncommitted", partitions=sorted(str(tp) for tp in never), reset=reset)
        await (consumer.seek_to_end if reset == "latest" else consumer.seek_to_beginning)(*never)
    return committed


class GapSafeConsumer(faust_aiokafka.Consumer):  # type: ignore[misc]
    """faust's aiokafka consumer with `close_head_gap` before each new-offset computation,
    reading committed records only, that restarts the worker rather than take partitions
    over while it runs (`services/features/rejoin.py`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.held_partitions = HeldPartitions()
        # Stream partitions resumed and not yet sought to their committed offsets: faust
        # resumes them, then awaits the seek, and a fetch in between would read from
        # wherever the position was left — past records faust dropped as not active when
        # it paused the partition while a fetch was in flight — and deliver them out of
        # order (a tick closing windows before the clicks inside them).
        self.unseeked: set[Any] = set()
        self._sought = asyncio.Event()  # set while no partition waits for its seek
        self._sought.set()
        # The last offset this worker saw committed per partition; faust forgets its own at
        # every revocation (`seek_every_stream_partition` uses it).
        self.known_committed: dict[Any, int] = {}

    async def on_partitions_revoked(self, revoked: set[Any]) -> None:
        self._remember_committed()
        await faust_aiokafka.Consumer.on_partitions_revoked(self, revoked)

    def _remember_committed(self) -> None:
        self.known_committed.update(
            {tp: at for tp, at in self._committed_offset.items() if at is not None and at > 0}
        )

    def resume_partitions(self, tps: Any) -> None:
        tps = set(tps)
        streams = {tp for tp in tps if not self._is_changelog_tp(tp)}
        if streams:
            self.unseeked |= streams
            self._sought.clear()
        faust_aiokafka.Consumer.resume_partitions(self, tps)

    async def perform_seek(self) -> None:
        seeking = set(self.unseeked)
        await faust_aiokafka.Consumer.perform_seek(self)
        self.unseeked -= seeking  # (a failed seek leaves them unread: recovery fails loudly)
        self._remember_committed()
        if not self.unseeked:
            self._sought.set()

    async def wait_for_seek(self, timeout: float) -> None:  # noqa: ASYNC109 - a fetch's wait
        """Wait until no partition waits for its seek, at most `timeout` (as a fetch with
        nothing to read waits). Returning at once spun a core while the seek waited for a
        broker that was away (fault suite: 2 of 20 outages, features at 100 % of a core)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._sought.wait(), timeout)

    async def on_partitions_assigned(self, assigned: set[Any], generation_id: int = 0) -> None:
        streams = {tp for tp in assigned if not self._is_changelog_tp(tp)}
        gained = self.held_partitions.gained(streams)
        if gained:
            request_rejoin(gained, streams - gained)
            return  # faust never takes this assignment: the worker stops and starts afresh
        await faust_aiokafka.Consumer.on_partitions_assigned(self, assigned, generation_id)

    def _new_consumer_thread(self) -> Any:
        return ReadCommittedConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def _new_offset(self, tp: Any) -> int | None:
        if close_head_gap(self, tp):
            _log.warning("commit_gap_closed", topic=tp.topic, partition=tp.partition)
        return faust_aiokafka.Consumer._new_offset(self, tp)  # type: ignore[no-any-return]


class PacedProducer(faust_aiokafka.Producer):  # type: ignore[misc]
    """faust's producer whose aiokafka client paces its metadata refresh while no broker
    answers (services/common/kafka_pacing.py): unpaced it spun a core during outages."""

    def _new_producer(self, transactional_id: str | None = None) -> Any:
        producer = faust_aiokafka.Producer._new_producer(self, transactional_id)
        pace_metadata_updates(producer.client)
        return producer


class GapSafeTransport(faust_aiokafka.Transport):  # type: ignore[misc]
    """The features worker's transport: the consumer above and the paced producer."""

    Consumer = GapSafeConsumer
    Producer = PacedProducer
