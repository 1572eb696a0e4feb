"""Wiring and lifespan: open the clients in order, run the stream and the HTTP collector.

Start-up order matters for exactly-once: (1) topics exist; (2) the transactional producer
registers this instance's transactional id, which aborts or completes anything a previous
incarnation left open; (3) the dedup window is rebuilt from admuse.events up to the last stable
offset; (4) the consumer joins the group (static member `<group_id>-<instance_id>`) and, on each
assignment, catches the dedup window up again before processing. /readyz turns 200 after that.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time

import structlog
import uvicorn
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener

from services.common.codec import SchemaRegistry
from services.common.http_server import Server
from services.common.kafka import ensure_topics, make_consumer, make_producer, wait_for_broker
from services.common.producer import ResilientProducer
from services.common.source_watermark import HeldEvents, SourceWatermarks
from services.common.stall import watching_shutdown
from services.common.topics import Topics
from services.common.watermark import WatermarkCodec
from services.ingestion.collector import build_http_app
from services.ingestion.dedup import DedupWindow
from services.ingestion.events_tail import EventsTail
from services.ingestion.metrics import IngestionMetrics
from services.ingestion.pipeline import Processor
from services.ingestion.settings import Settings
from services.ingestion.stream import IngestionStream, WatermarkOut
from services.ingestion.transform import TransformPool
from services.ingestion.validation import Limits

__all__ = ["run"]

_log = structlog.get_logger(__name__)


async def run(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run ingestion until SIGTERM/SIGINT (or `stop`), then close everything cleanly."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    if settings.pseudonym_secret is None:
        _log.warning(
            "dev_mode", detail="no ADMUSE_PSEUDONYM_SECRET, pseudonyms use a public dev key"
        )

    kafka = settings.kafka
    topics = Topics.from_settings(kafka)
    await wait_for_broker(kafka, 60)
    await ensure_topics(kafka, topics)
    schemas = SchemaRegistry.load()
    event_codec = schemas.codec("AdEvent")
    metrics = IngestionMetrics()
    limits = Limits(max_future_skew_ms=int(settings.max_future_skew_s * 1000))
    dedup = DedupWindow(int(settings.dedup_horizon_s * 1000), settings.dedup_max_entries)
    processor = Processor(
        event_codec=event_codec,
        dlq_codec=schemas.codec("DeadLetter"),
        secret=settings.secret_bytes(),
        dedup=dedup,
        events_topic=topics.events.name,
        dlq_topic=topics.events_dlq.name,
        max_event_bytes=settings.max_event_bytes,
        dlq_max_value_bytes=settings.dlq_max_value_bytes,
        limits=limits,
        carry_headers=settings.carried_headers(),
    )
    # both byte orders: the events topic still holds records written before the fix
    fingerprints = {fp for v in schemas.versions("AdEvent") for fp in v.fingerprints}

    def consumer_factory(listener: ConsumerRebalanceListener) -> AIOKafkaConsumer:
        consumer = make_consumer(
            kafka,
            group_id=settings.group(),
            group_instance_id=settings.group_instance_id(),
            max_poll_records=settings.max_batch,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        consumer.subscribe([topics.events_raw.name], listener=listener)
        return consumer

    async with contextlib.AsyncExitStack() as stack:
        # First in, last out: a stalled stop, clients' included, logs where it waits.
        await stack.enter_async_context(watching_shutdown(stop))
        producer = make_producer(
            kafka, transactional_id=settings.transactional_id(), max_request_size=4 * 1024 * 1024
        )
        await producer.start()
        stack.push_async_callback(producer.stop)
        http_producer = ResilientProducer(
            lambda: make_producer(kafka),
            name="collector",
            delivery_timeout_s=settings.http_kafka_timeout_s,
        )
        await http_producer.start()
        stack.push_async_callback(http_producer.stop)
        tail = EventsTail(kafka, topics.events.name, dedup, fingerprints)
        await tail.start(time.time_ns() // 1_000_000)
        stack.push_async_callback(tail.stop)
        await tail.catch_up()

        transforms = TransformPool(
            processor.spec,
            settings.worker_count(),
            log_level=settings.log.level,
            log_format=settings.log.format,
            on_failure=metrics.worker_failures.inc,
        )
        await transforms.start()
        metrics.transform_workers.set(transforms.workers)
        stack.callback(transforms.stop)

        stream = IngestionStream(
            consumer_factory=consumer_factory,
            producer=producer,
            tail=tail,
            processor=processor,
            metrics=metrics,
            group_id=settings.group(),
            max_batch=settings.max_batch,
            transforms=transforms,
            watermarks=WatermarkOut(
                codec=WatermarkCodec(schemas),
                topic=topics.events.name,
                producer_name=settings.transactional_id(),
                interval_s=settings.watermark_interval_s,
                skew_ms=settings.watermark_skew_ms,
                sources_learn_ms=settings.source_learn_ms,
                sources_expiry_ms=int(settings.source_expiry_s * 1000),
            ),
        )
        stream_task = asyncio.create_task(stream.run(stop), name="ingestion-stream")
        tasks = {stream_task}
        if settings.http_port:
            # the collector is a live source of the raw topic: it states what it still holds
            held = HeldEvents()
            source = SourceWatermarks(
                http_producer,
                topic=topics.events_raw.name,
                codec=WatermarkCodec(schemas),
                name=f"{settings.transactional_id()}-collector",
                held=held,
                lag_ms=settings.watermark_skew_ms,
            )
            stack.push_async_callback(source.close, end=True)  # started by the first event
            http_app = build_http_app(
                producer=http_producer,
                raw_topic=topics.events_raw.name,
                metrics=metrics,
                api_keys=settings.api_key_set(),
                allow_without_key=settings.dev_mode,
                max_body_bytes=settings.http_max_body_bytes,
                max_batch=settings.http_max_batch,
                limits=limits,
                is_ready=stream.ready.is_set,
                is_alive=lambda: not stream_task.done(),
                kafka_timeout_s=settings.http_kafka_timeout_s,
                retry_after_s=settings.http_retry_after_s,
                source=source,
                resend_horizon_s=settings.http_resend_horizon_s,
            )
            server = Server(
                uvicorn.Config(
                    http_app,
                    host=settings.http_host,
                    port=settings.http_port,
                    log_config=None,
                    access_log=False,
                    lifespan="off",
                    timeout_keep_alive=settings.http_keep_alive_s,
                )
            )
            tasks.add(asyncio.create_task(server.serve(), name="ingestion-http"))
        _log.info(
            "ingestion_running",
            raw=topics.events_raw.name,
            events=topics.events.name,
            dlq=topics.events_dlq.name,
            instance=settings.instance_id,
            http_port=settings.http_port or None,
        )
        stopper = asyncio.create_task(stop.wait(), name="ingestion-stop")
        try:
            await asyncio.wait({stopper, *tasks}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.set()
            if settings.http_port:
                server.should_exit = True
            results = await asyncio.gather(*tasks, stopper, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                raise result
        _log.info("ingestion_stopped")
