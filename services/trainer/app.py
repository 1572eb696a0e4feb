"""Trainer service wiring: consume campaigns, creatives and rewards; retrain; publish.

One consumer, partitions assigned by hand (no group): campaigns and creatives (compacted) are
read from the beginning into memory; rewards resume from the offsets saved with the training
buffer, or — when the buffer file is missing — from the start of the buffer's time window.
A campaign retrains when its data carry new information (`TrainerState.due`: new positives, a
shifted CTR, the last model's error on new rewards — checked every `_CHECK_EVERY_S` by
`freshness.prequential_logloss` — or the clock), never sooner than a floor that follows the
traffic. Training runs in a worker thread so consumption goes on; one model trains at a time.
A model whose exported networks are byte-identical to the last one published for the campaign
is not published again (logged as `model unchanged`; inference would only swap it for
itself).
"""

from __future__ import annotations

import asyncio
import hashlib
import signal
import time
from collections.abc import Mapping
from contextlib import AsyncExitStack
from typing import Any

import structlog
import torch
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.common.codec import RecordCodec, SchemaRegistry
from services.common.creative_space import EncodingError
from services.common.health import HealthServer
from services.common.kafka import (
    ensure_topics,
    make_consumer,
    make_producer,
    partitions_of,
    wait_for_broker,
)
from services.common.logging import configure_logging
from services.common.model_store import ModelStore
from services.common.producer import NotDelivered, ResilientProducer
from services.common.signing import Signer
from services.common.stall import watching_shutdown
from services.common.topics import Topics
from services.trainer.buffer import BufferFileError, TrainingBuffer
from services.trainer.export import ExportError
from services.trainer.freshness import prequential_logloss
from services.trainer.metrics import Metrics
from services.trainer.pipeline import BuiltModel, QualityRefused, store_model, train_campaign
from services.trainer.settings import Settings
from services.trainer.state import TrainerState
from services.trainer.train import TrainingError, pick_device

__all__ = ["main", "run"]

log = structlog.get_logger("trainer")
_SAVE_EVERY_S = 5.0
_CHECK_EVERY_S = 10.0


async def _assign(consumer: AIOKafkaConsumer, state: TrainerState) -> None:
    topics = state.topics
    parts: dict[str, list[TopicPartition]] = {}
    names = (topics.campaigns.name, topics.creatives.name, topics.rewards.name)
    for tp in await partitions_of(state.settings.kafka, names):
        parts.setdefault(tp.topic, []).append(tp)
    consumer.assign([tp for tps in parts.values() for tp in tps])
    await consumer.seek_to_beginning(*parts[topics.campaigns.name], *parts[topics.creatives.name])
    saved = state.buffer.offsets.get(topics.rewards.name, {})
    rewards = parts[topics.rewards.name]
    missing = [tp for tp in rewards if tp.partition not in saved]
    for tp in rewards:
        if tp.partition in saved:
            consumer.seek(tp, saved[tp.partition])
    if missing:  # rebuild: from the start of the buffer's window
        since = int(time.time() * 1000) - state.settings.buffer_max_age_ms
        found = await consumer.offsets_for_times({tp: since for tp in missing})
        for tp in missing:
            hit = found.get(tp)
            if hit is None:
                await consumer.seek_to_end(tp)
            else:
                consumer.seek(tp, hit.offset)
    log.info("partitions_assigned", resumed=len(rewards) - len(missing), rebuilt=len(missing))


def _load_buffer(settings: Settings) -> TrainingBuffer:
    try:
        buf = TrainingBuffer.load(
            settings.buffer_path, settings.buffer_max_rows, settings.buffer_max_age_ms
        )
        log.info("training_buffer_loaded", path=str(settings.buffer_path), rows=len(buf))
        return buf
    except BufferFileError as exc:
        log.info("training_buffer_rebuilt", detail="from the rewards topic", reason=str(exc))
        return TrainingBuffer(
            settings.buffer_max_rows, settings.buffer_max_age_ms, settings.buffer_path
        )


async def run(settings: Settings, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    try:
        signer = settings.signer()
    except ValueError as exc:
        raise SystemExit(f"trainer: {exc}") from None
    metrics = Metrics()
    if settings.metrics_port >= 0:
        metrics.serve(settings.metrics_port)
    registry = SchemaRegistry.load()
    topics = Topics.from_settings(settings.kafka)
    device = pick_device(settings.device)
    log.info(
        "trainer_starting",
        device=str(device),
        cuda_available=torch.cuda.is_available(),
        profile=settings.profile,
        seed=settings.seed,
        signing_key_id=signer.key_id,
    )
    await wait_for_broker(settings.kafka)
    await ensure_topics(settings.kafka, topics)
    state = TrainerState(settings, registry, topics, _load_buffer(settings))
    store = ModelStore(settings.model_store_url)
    published = registry.codec("ModelPublished")
    publish = _Publish(store, signer, producer=None, codec=published, metrics=metrics)
    assigned = asyncio.Event()
    async with AsyncExitStack() as stack:
        if settings.health_port:
            health = HealthServer(settings.health_host, settings.health_port, assigned.is_set)
            stack.callback(health.start().stop)
        consumer = make_consumer(settings.kafka, group_id=None)
        await consumer.start()
        stack.push_async_callback(consumer.stop)
        producer = ResilientProducer(lambda: make_producer(settings.kafka), name="trainer")
        await producer.start()
        stack.push_async_callback(producer.stop)
        publish.producer = producer
        await _assign(consumer, state)
        assigned.set()  # ready: reading rewards
        training: asyncio.Task[None] | None = None
        checking: asyncio.Task[None] | None = None
        last_check = time.monotonic()
        last_save = time.monotonic()
        dirty = False
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=500)
            n = 0
            for msgs in batches.values():
                for msg in msgs:
                    state.apply(msg)
                    n += 1
            if n:
                dirty = True
                log.debug("batch", records=n, buffered=len(state.buffer))
            if dirty and time.monotonic() - last_save > _SAVE_EVERY_S:
                state.buffer.evict(int(time.time() * 1000))
                await asyncio.to_thread(state.buffer.save)
                dirty, last_save = False, time.monotonic()
            if training is not None and training.done():
                _report_crash(training)
                training = None
            if training is None:
                due = state.due(time.monotonic())
                if due:
                    cid = due[0]
                    training = asyncio.create_task(_train_and_publish(state, cid, device, publish))
            if checking is not None and checking.done():
                _report_crash(checking)
                checking = None
            if (
                training is None
                and checking is None
                and (time.monotonic() - last_check > _CHECK_EVERY_S)
            ):
                last_check = time.monotonic()
                checking = asyncio.create_task(_check_freshness(state))
        state.buffer.save()
        if training is not None:  # a torch run cannot be interrupted: let it finish
            await asyncio.wait([training])
            _report_crash(training)
        log.info(
            "trainer_stopped",
            buffered=len(state.buffer),
            rejected=dict(state.rejected),
            unshown=dict(state.unshown),
        )


class _Publish:
    """Where a trained model goes: store, signing key, producer, metrics."""

    def __init__(
        self, store: ModelStore, signer: Signer, producer: Any, codec: RecordCodec, metrics: Metrics
    ) -> None:
        self.store, self.signer, self.producer = store, signer, producer
        self.codec, self.metrics = codec, metrics


async def _train_and_publish(state: TrainerState, cid: str, device: Any, publish: _Publish) -> None:
    rows = state.buffer.rows(cid)
    campaign = state.campaigns[cid]
    creatives: Mapping[str, Any] = dict(state.creatives)
    reason = state.reasons.get(cid)
    state.mark_trained(cid, time.monotonic())
    started = time.perf_counter()
    log.info("training", campaign_id=cid, rows=len(rows), device=str(device), reason=reason)
    built = None
    try:
        built = await asyncio.to_thread(
            train_campaign, state.settings, campaign, creatives, rows, device=device
        )
        digest = _digest(built)
        if state.last_model.get(cid, (None,))[0] == digest:
            publish.metrics.not_published.labels(cid, "unchanged").inc()
            log.info("model_unchanged", detail="not published", campaign_id=cid, reason=reason,
                     seconds=round(time.perf_counter() - started, 2))  # fmt: skip
            return
        record = await asyncio.to_thread(store_model, publish.store, built, publish.signer)
    except QualityRefused as exc:
        publish.metrics.not_published.labels(cid, exc.reason).inc()
        quality = built.quality if built is not None else {}
        log.warning(
            "model_refused_by_quality_gate",
            campaign_id=cid,
            version=built.version if built is not None else None,
            reasons=quality.get("reasons"),
            metrics={k: round(v, 4) for k, v in (built.metrics if built else {}).items()},
        )
        return
    except (TrainingError, ExportError, EncodingError) as exc:
        why = getattr(exc, "reason", None) or (
            "export_failed" if isinstance(exc, ExportError) else "bad_encoding"
        )
        publish.metrics.not_published.labels(cid, why).inc()
        log.warning("model_not_published", campaign_id=cid, reason=why, error=str(exc))
        return
    try:
        await publish.producer.send(
            state.topics.models.name, publish.codec.encode(record), key=cid.encode()
        )
    except NotDelivered as exc:  # stored but not announced: the next retrain publishes again
        publish.metrics.not_published.labels(cid, "kafka_unavailable").inc()
        log.error(
            "model_not_published", detail="Kafka did not take it", campaign_id=cid, error=str(exc)
        )
        return
    publish.metrics.published.labels(cid).inc()
    state.last_model[cid] = (digest, built)
    m = built.metrics
    log.info(
        "model_published",
        campaign_id=cid,
        version=built.version,
        reason=reason,
        seconds=round(time.perf_counter() - started, 2),
        rows=built.training_rows,
        reward_auc=m.get("reward_auc"),
        reward_logloss=m.get("reward_logloss"),
        reward_ece=m.get("reward_ece"),
        fidelity=m.get("fidelity_mean"),
        detection_auc=m.get("detection_auc"),
        diversity=m.get("diversity"),
        condition_fidelity=m.get("condition_fidelity"),
        predicted_reward_generated=m.get("predicted_reward_generated"),
        predicted_reward_catalog=m.get("predicted_reward_catalog"),
    )


def _digest(built: BuiltModel) -> str:
    return hashlib.sha256(built.exported.generator + built.exported.reward_model).hexdigest()


async def _check_freshness(state: TrainerState) -> None:
    """Mark campaigns whose last model predicts the new rewards worse than its held-out data."""
    for cid, (_, built) in list(state.last_model.items()):
        campaign = state.campaigns.get(cid)
        held_out = built.metrics.get("reward_logloss")
        if campaign is None or held_out is None or cid in state.stale:
            continue
        rows = state.since_trained(cid)
        found = await asyncio.to_thread(
            prequential_logloss, built, campaign, dict(state.creatives), rows
        )
        if found is None:
            continue
        loss, se = found
        if loss - 2 * se > held_out * (1 + state.settings.retrain_loss_increase):
            log.info("model_error_grew_on_new_rewards", campaign_id=cid, version=built.version,
                     logloss_new=round(loss, 5), logloss_se=round(se, 5),
                     logloss_held_out=round(held_out, 5), rows=len(rows))  # fmt: skip
            state.mark_stale(cid)


def _report_crash(task: asyncio.Task[None]) -> None:
    """A training run that failed unexpectedly is logged; the service keeps consuming."""
    exc = task.exception()
    if exc is not None:
        log.error("training_failed", error=repr(exc), exc_info=exc)


def main() -> None:
    settings = Settings()
    configure_logging(settings.log.level, settings.log.format, service="trainer")

    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with watching_shutdown(stop):
            await run(settings, stop)

    asyncio.run(_main())
