"""The exactly-once loop: consume admuse.events.raw, transform, produce, commit — atomically.

Each batch is one Kafka transaction holding its forwarded events, its dead letters and the
consumer offsets of the raw records it covers (`send_offsets_to_transaction`). A crash at any
point leaves either the whole batch committed or none of it; on restart the consumer resumes
from the committed offsets and read_committed readers never see the aborted part. A Kafka error
before the commit aborts the batch and retries it from the committed offsets; a failed commit
(outcome unknown) stops the service, and the restart settles it (run it under a restart policy).

Every record's delivery is awaited BEFORE EndTxn(COMMIT): aiokafka's commit flushes the batches
but ignores their outcome (`flush_for_commit` waits, never checks), and a batch that failed —
expired while the broker was down (past request_timeout_ms, then failed with
LeaderNotAvailable while the restarted broker had no leader yet), rejected by it — leaves the
transaction committable. Committing then commits the raw offsets without those records: raw
events lost (#13's chaos run, 6 events at 3 of 20 broker stops). A failed delivery aborts the
transaction instead and stops the service (`DeliveryFailed`): aiokafka keeps the producer's
sequence numbers past the lost batch, so the restart (a new producer epoch) re-reads the batch
from the committed offsets.

Transactional id: one per instance (`<prefix><group_id>-<instance_id>`), with static group
membership under the same instance id. A restarted instance re-registers that transactional id,
which fences its dead predecessor and aborts whatever transaction it left open before we read
anything back. aiokafka commits offsets with TxnOffsetCommit v0 (no group-generation fencing,
KIP-447), so zombie fencing is per instance id: give every running instance its own id and keep
it across restarts (a StatefulSet ordinal, a compose service name).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError, ProducerFenced

from services.common.codec import CodecError
from services.common.watermark import LIVE, WatermarkCodec
from services.ingestion.batch_send import BatchSender
from services.ingestion.delivery import DeliveryFailed, commit_delivered
from services.ingestion.events_tail import EventsTail
from services.ingestion.metrics import IngestionMetrics
from services.ingestion.pipeline import BatchResult, Outgoing, Processor, RawRecord
from services.ingestion.raw_sources import RawSources
from services.ingestion.rebalance import StreamRebalance
from services.ingestion.summary import Summary
from services.ingestion.transform import Transformed, TransformPool
from services.ingestion.watermarks import RawClock

__all__ = ["DeliveryFailed", "IngestionStream"]

_log = structlog.get_logger(__name__)
_CHAIN_S = 3.0  # pipelined batches per hold of the rebalance lock, at most this long


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class _Pending:
    """A fetched batch on its way through the transform."""

    batches: dict[TopicPartition, list[RawRecord]]
    records: list[RawRecord]  # the source's Watermarks left out (`markers`)
    markers: list[tuple[int, str, int, str]]  # (raw partition, clock, watermark, producer)
    transformed: asyncio.Future[Transformed]
    started: float
    now_ms: int


@dataclass(slots=True)
class _Committing:
    """A batch whose transaction is committing."""

    task: asyncio.Future[None]
    result: BatchResult
    started: float
    now_ms: int
    clock: RawClock  # the claims once this commits
    claims: dict[str, dict[int, int]] | None  # watermark claims written in this transaction


@dataclass(frozen=True)
class WatermarkOut:
    """Where and how often the stream states its watermarks (`watermarks`)."""

    codec: WatermarkCodec
    topic: str  # admuse.events: a record into each of its partitions
    producer_name: str
    interval_s: float
    skew_ms: int
    sources_learn_ms: int = 10_000  # raw_sources.py: learning and expiry of live sources
    sources_expiry_ms: int = 30_000


class IngestionStream:
    def __init__(
        self,
        *,
        consumer_factory: Callable[[ConsumerRebalanceListener], AIOKafkaConsumer],
        producer: AIOKafkaProducer,
        tail: EventsTail,
        processor: Processor,
        metrics: IngestionMetrics,
        group_id: str,
        max_batch: int,
        transforms: TransformPool,
        watermarks: WatermarkOut,
    ) -> None:
        self._consumer_factory = consumer_factory
        self._producer = producer
        self.tail = tail
        self._processor = processor
        self._transforms = transforms
        # Batches being transformed at once: workers + 1 keeps every worker busy while this
        # process settles and produces; in-process, one (the next batch) is all there is.
        self._depth = transforms.workers + 1 if transforms.workers else 1
        self._metrics = metrics
        self._group_id = group_id
        self._max_batch = max_batch
        self.lock = asyncio.Lock()
        self.generation = 0
        self.rebalancing = True  # until the first assignment
        self.ready = asyncio.Event()
        self._partitions: dict[str, list[int]] = {}
        self._sender = BatchSender(producer, self._partitions)
        self._summary = Summary()
        self._wm = watermarks
        sources = RawSources(watermarks.sources_learn_ms, watermarks.sources_expiry_ms)
        self.clock = RawClock(watermarks.skew_ms, sources)
        self._wm_at = 0.0  # monotonic time watermarks were last written

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set. Kafka errors abort the batch and retry it; a fenced
        producer (another process took this instance id) ends the loop with an error."""
        consumer = self._consumer_factory(StreamRebalance(self))
        await consumer.start()
        try:
            while not stop.is_set():
                generation = self.generation
                try:
                    batches = await consumer.getmany(timeout_ms=200, max_records=self._max_batch)
                except KafkaError as exc:  # broker trouble: keep trying, say so
                    _log.warning("fetching_raw_records_failed", detail="retrying", error=repr(exc))
                    await asyncio.sleep(1.0)
                    continue
                self._metrics.dedup_entries.set(len(self._processor.dedup))
                if not batches:
                    if time.monotonic() - self._wm_at >= self._wm.interval_s:
                        async with self.lock:
                            if generation == self.generation and not self.rebalancing:
                                await self._idle_watermarks(consumer)
                    self._summary.maybe_log(len(self._processor.dedup), force=False)
                    continue
                async with self.lock:
                    if generation != self.generation:
                        # A rebalance ran while these were fetched: drop them and go back to
                        # the group's committed offsets of the partitions still ours.
                        await self._rewind(consumer, batches)
                        continue
                    await self._transact_chain(consumer, batches, stop)
                self._summary.maybe_log(len(self._processor.dedup), force=False)
        finally:
            self.ready.clear()
            self._summary.maybe_log(len(self._processor.dedup), force=True)
            await consumer.stop()

    async def _rewind(
        self, consumer: AIOKafkaConsumer, batches: dict[TopicPartition, list[RawRecord]]
    ) -> None:
        owned = consumer.assignment()
        for tp, recs in batches.items():
            if tp in owned:
                committed = await consumer.committed(tp)
                consumer.seek(tp, committed if committed is not None else recs[0].offset)

    async def _transact_chain(
        self,
        consumer: AIOKafkaConsumer,
        batches: dict[TopicPartition, list[RawRecord]],
        stop: asyncio.Event,
    ) -> None:
        """Transact `batches`, then — still under the rebalance lock, for up to
        `_CHAIN_S` — the batches fetched meanwhile, one transaction each, in order.

        A pipeline: while one batch's transaction commits (the broker acknowledging its
        records, then EndTxn), the next batches are already being transformed — by the
        worker processes, `depth` batches ahead, so they are never idle while this process
        does the Kafka work; in-process, one batch ahead between turns of the event loop. A
        transaction only begins once the previous one committed, and holds that batch's own
        output and offsets. A batch is settled (de-duplicated) just before its transaction,
        counting the committing batch's event_ids as seen; if that commit fails the service
        stops (see `_finish`) and everything after it is read again after the restart. If a
        transaction aborts, the batches fetched after it are dropped too and every partition
        involved goes back to its committed offset.
        """
        started = time.perf_counter()
        queue: deque[_Pending] = deque([self._submit(batches)])
        committing: _Committing | None = None
        try:
            while queue:
                while (
                    len(queue) < self._depth
                    and not stop.is_set()
                    and time.perf_counter() - started < _CHAIN_S
                ):
                    following = await self._fetch_now(consumer)
                    if not following:
                        break
                    queue.append(self._submit(following))
                pending = queue.popleft()
                done = await pending.transformed
                result = self._processor.settle(
                    pending.records,
                    done,
                    pending.now_ms,
                    already=committing.result.forwarded_ids if committing else (),
                )
                if committing is not None:
                    await self._finish(committing)
                    committing = None
                begun = await self._begin(consumer, pending, result)
                if begun is None:  # aborted and rewound: retry from the committed offsets
                    for later in queue:
                        await self._rewind(consumer, later.batches)
                    return
                task, clock, claims = begun
                committing = _Committing(
                    task, result, pending.started, pending.now_ms, clock, claims
                )
            if committing is not None:
                await self._finish(committing)
        finally:
            for later in queue:  # left only when failing: nothing of them was produced
                later.transformed.cancel()

    def _submit(self, batches: dict[TopicPartition, list[RawRecord]]) -> _Pending:
        """Start transforming a fetched batch (in the workers, or in this process)."""
        records = []
        markers = []
        is_watermark = self._wm.codec.is_watermark
        for recs in batches.values():
            for rec in recs:
                if is_watermark(rec.value):
                    markers.extend(self._marker(rec))
                else:
                    records.append(rec)
        now_ms = _now_ms()
        run = self._transforms.run([rec.value for rec in records], now_ms)
        future = asyncio.ensure_future(run)
        return _Pending(batches, records, markers, future, time.perf_counter(), now_ms)

    def _marker(self, rec: RawRecord) -> list[tuple[int, str, int, str]]:
        """A source's Watermark in the raw topic: its clock's claim for this raw partition."""
        try:
            wm = self._wm.codec.decode(rec.value)  # type: ignore[arg-type]
        except CodecError as exc:
            _log.warning("bad_watermark_in_the_raw_topic", detail="ignored", error=str(exc))
            self._metrics.bad_source_watermarks.inc()
            return []
        marks = [int(c["watermark_ms"]) for c in wm["claims"]]
        return [(rec.partition, wm["source"], min(marks), wm["producer"])] if marks else []

    async def _fetch_now(
        self, consumer: AIOKafkaConsumer
    ) -> dict[TopicPartition, list[RawRecord]] | None:
        """Records already fetched, without waiting. Called under the rebalance lock, so never
        while a rebalance runs: getmany would then wait for the new assignment, which waits
        for `on_partitions_revoked`, which waits for the lock — a deadlock that froze an
        instance (and its shutdown) when a second one joined the group."""
        if self.rebalancing:
            return None
        try:
            return await consumer.getmany(timeout_ms=0, max_records=self._max_batch)
        except KafkaError:  # the main loop's fetch reports and retries
            return None

    async def _begin(
        self, consumer: AIOKafkaConsumer, pending: _Pending, result: BatchResult
    ) -> tuple[asyncio.Future[None], RawClock, dict[str, dict[int, int]] | None] | None:
        """Open the batch's transaction, produce its records, the watermark claims now due
        and the offsets, start the commit."""
        batches = pending.batches
        offsets = {tp: recs[-1].offset + 1 for tp, recs in batches.items()}
        clock = self.clock.copy()
        for r, source, mark, writer in pending.markers:
            clock.source(source, r, mark, writer)
        newest = {tp.partition: max(r.timestamp for r in rs) for tp, rs in batches.items()}
        clock.read(newest, pending.now_ms)
        claims = None
        outgoing = result.outgoing
        if time.monotonic() - self._wm_at >= self._wm.interval_s:
            claims = clock.claims()
            outgoing = [*outgoing, *await self._watermark_records(consumer, claims)]
            self._wm_at = time.monotonic()
        producer = self._producer
        await producer.begin_transaction()
        try:
            futures = await self._sender.send_all(outgoing)
            await producer.send_offsets_to_transaction(offsets, self._group_id)
        except ProducerFenced:
            _log.error(
                "producer_fenced", detail="another process runs with this instance id; stopping"
            )
            raise
        except KafkaError as exc:
            # Nothing is committed yet: abort, go back to the group's committed offsets, retry.
            self._metrics.aborted.inc()
            _log.warning(
                "transaction_failed_before_commit", detail="retrying the batch", error=repr(exc)
            )
            await producer.abort_transaction()
            await self._rewind(consumer, batches)
            await asyncio.sleep(0.5)
            return None

        return asyncio.ensure_future(commit_delivered(producer, futures)), clock, claims

    async def _idle_watermarks(self, consumer: AIOKafkaConsumer) -> None:
        """Nothing fetched: ask Kafka which owned raw partitions are read to their end and
        let their claims advance to the wall clock (minus the skew); write the claims in a
        transaction of their own if they moved."""
        owned = sorted(consumer.assignment())
        self._wm_at = time.monotonic()
        if not owned:
            return
        asked_at = _now_ms()  # before asking: anything appended later is stamped later
        try:
            ends = await consumer.end_offsets(owned)
            done = [tp.partition for tp in owned if await consumer.position(tp) >= ends[tp]]
        except KafkaError as exc:
            _log.warning(
                "asking_for_raw_end_offsets_failed", detail="watermarks wait", error=repr(exc)
            )
            return
        self.clock.caught_up(done, asked_at)
        self._metrics.raw_sources(self.clock.sources)
        if not self.clock.changed():
            return
        claims = self.clock.claims()
        records = await self._watermark_records(consumer, claims)
        producer = self._producer
        await producer.begin_transaction()
        try:
            futures = await self._sender.send_all(records)
        except KafkaError as exc:
            self._metrics.aborted.inc()
            _log.warning("writing_watermarks_failed", detail="retrying later", error=repr(exc))
            await producer.abort_transaction()
            return
        await commit_delivered(producer, futures)
        self._stated(claims)

    async def _watermark_records(
        self, consumer: AIOKafkaConsumer, claims: dict[str, dict[int, int]]
    ) -> list[Outgoing]:
        """Per clock, one Watermark record into each partition of admuse.events."""
        wm = self._wm
        if wm.topic not in self._partitions:
            self._partitions[wm.topic] = sorted(await self._producer.partitions_for(wm.topic))
        raw_topic = next(iter(consumer.subscription()), None)
        inputs = len(consumer.partitions_for_topic(raw_topic) or ()) if raw_topic else 0
        now = _now_ms()
        key = wm.producer_name.encode()
        out = []
        for clock, marks in claims.items():
            value = wm.codec.encode(wm.producer_name, inputs, marks, now, source=clock)
            out += [
                Outgoing(wm.topic, key, value, now, partition=p) for p in self._partitions[wm.topic]
            ]
        return out

    def _stated(self, claims: dict[str, dict[int, int]]) -> None:
        self.clock.stated(claims)
        for r, mark in claims.get(LIVE, {}).items():
            self._metrics.watermark.set(r, mark)

    async def _finish(self, committing: _Committing) -> None:
        # A failed commit leaves the outcome unknown: let it raise and the service stop. A
        # restart re-registers the transactional id, which settles the transaction, and
        # rebuilds offsets and the dedup window from Kafka (what the kill test proves). A batch
        # not delivered aborted the transaction and raises `DeliveryFailed`: the same restart.
        await committing.task
        result = committing.result
        self.clock = committing.clock
        self._metrics.raw_sources(self.clock.sources)
        if committing.claims is not None:
            self._stated(committing.claims)
        self._processor.commit(result, committing.now_ms)
        self._metrics.record_batch(result, time.perf_counter() - committing.started, _now_ms())
        self._summary.add(result)
