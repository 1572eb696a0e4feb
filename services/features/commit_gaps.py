"""The features worker's Kafka transport: faust's aiokafka consumer made safe to commit from.

faust (0.15.3) can hand agents a partition out of order and commit an offset whose record no
agent processed; each way is closed here, with a test that fails if a faust upgrade changes
what it relies on (tests/unit/features/test_commit_gaps.py) and kill tests against the broker
(tests/integration/test_features_kill.py). What is left is faust's own rule: it commits a
partition up to the first break in the acknowledged offsets, and a record never delivered
(a transaction marker) is a break only until faust records it as a gap while it reads.

1. Records before the seek (`GapSafeConsumer.on_partitions_assigned`, `resume_partitions`,
   `perform_seek`). On a rebalance faust resumes fetching to replay its changelogs *before*
   it seeks the stream partitions to their committed offsets, and partitions newly assigned
   are not paused: agents then get records from wherever the client's position was (seen:
   the end of a partition a peer had owned), and after the seek the same partition again
   from the committed offset. A watermark read that
   way let a worker close windows before it routed the clicks behind it (clicks lost when a
   peer's partitions moved over), and a record acknowledged that way was committed before
   the records below it were processed (a decision lost when killed right after). Every
   stream partition of an assignment stays paused until faust has sought it: faust's resume
   just before its seek is deferred to just after it.

2. Acknowledgements of records no agent processed (`GapSafeConsumer.ack`). A stream skips —
   and acknowledges — the records it still holds when a rebalance starts or ends (flow
   stopped, or an older generation), and faust records those acknowledgements even for the
   partitions it keeps: after the seek it commits past them as soon as the records below
   them are processed, before they are delivered again. Killed in between, the worker never
   processes them. Acknowledgements are recorded only for records delivered since faust's
   seek of the current assignment; the others come again and are acknowledged then.
   Repeated acknowledgements of one offset are dropped (robinhood/faust #625).

3. Uncommitted records (`ReadCommittedConsumerThread`). faust reads uncommitted records unless
   the app itself runs exactly-once, so it would join clicks — and advance the event clock on
   watermarks — that ingestion's aborted transactions never published.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types.tuples import ack_lock

from services.common.kafka_pacing import pace_metadata_updates

__all__ = [
    "GapSafeConsumer",
    "GapSafeTransport",
    "PacedProducer",
    "ReadCommittedConsumerThread",
]


class ReadCommittedConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):  # type: ignore[misc]
    """faust's consumer thread whose Kafka consumer reads committed records only."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer(self, transport)
        consumer._isolation_level = "read_committed"  # read by its fetcher at start()
        return consumer


class GapSafeConsumer(faust_aiokafka.Consumer):  # type: ignore[misc]
    """faust's aiokafka consumer with the three guards above."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._sought = False  # faust sought the stream partitions of the current assignment
        self._deferred: set[Any] = set()  # stream partitions to resume once sought
        super().__init__(*args, **kwargs)

    def _new_consumer_thread(self) -> Any:
        return ReadCommittedConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def _is_stream(self, tp: Any) -> bool:
        return tp.topic not in self.app.tables.changelog_topics

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self._sought = False
        await faust_aiokafka.Consumer.on_partitions_revoked(self, revoked)

    async def on_partitions_assigned(self, assigned: Any, generation_id: int = 0) -> None:
        # faust pauses the partitions it keeps (at revocation) but not the new ones: pause
        # every stream partition until the seek, so none is fetched from a stale position.
        self._sought = False
        self._paused_partitions.update(tp for tp in assigned if self._is_stream(tp))
        await faust_aiokafka.Consumer.on_partitions_assigned(self, assigned, generation_id)

    def resume_partitions(self, tps: Any) -> None:
        tps = set(tps)
        if not self._sought:  # faust resumes the stream partitions just before its seek
            held = {tp for tp in tps if self._is_stream(tp)}
            self._deferred |= held
            tps -= held
        faust_aiokafka.Consumer.resume_partitions(self, tps)

    async def perform_seek(self) -> None:
        # faust's seek after an assignment (`_resume_streams`) comes right after it resumed
        # the stream partitions (deferred above); the seek it makes while fetching with its
        # flow stopped (a rebalance under way) is not that one: the partitions stay paused.
        after_assignment = bool(self._deferred) or bool(self.flow_active)
        await faust_aiokafka.Consumer.perform_seek(self)
        # The client seeks only partitions with a committed offset past 0; the others start
        # where consumer_auto_offset_reset="earliest" puts them.
        uncommitted = [
            tp
            for tp in self.assignment()
            if self._is_stream(tp) and not self._committed_offset.get(tp)
        ]
        if uncommitted:
            await self._thread.seek_to_beginning(
                *(faust_aiokafka.ensure_aiokafka_TP(tp) for tp in uncommitted)
            )
        if not after_assignment:
            return
        self._sought = True
        deferred, self._deferred = self._deferred, set()
        faust_aiokafka.Consumer.resume_partitions(self, deferred & set(self.assignment()))

    def ack(self, message: Any) -> bool:
        with ack_lock:
            if self._sought and message.generation_id == self.app.consumer_generation_id:
                return bool(faust_aiokafka.Consumer.ack(self, message))
            if not message.acked:  # skipped by its stream: delivered again after the seek
                message.acked = True
                self._unacked_messages.discard(message)
            return False

    def _new_offset(self, tp: Any) -> int | None:
        acked: list[int] = self._acked[tp]
        if len(set(acked)) != len(acked):
            acked[:] = sorted(set(acked))
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
