"""Wiring of the inference service: state, models, policy, decision log, HTTP and gRPC.

The Decide operation itself is `decide.py` (`Inference`), which both front ends import.
`run(settings)` opens everything in order (topics, decision log, producer for
creatives, state follower, servers), serves until cancelled, and closes in reverse.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from collections.abc import AsyncIterator, Awaitable
from typing import Any

from pydantic import ValidationError

from services.common.codec import SchemaRegistry
from services.common.kafka import ensure_topics, make_producer, wait_for_broker
from services.common.logging import configure_logging, get_logger
from services.common.producer import ResilientProducer
from services.common.topics import Topics
from services.common.watermark import WatermarkCodec
from services.inference import propensity
from services.inference.curator import Curator
from services.inference.decide import Inference
from services.inference.decision_watermarks import DecisionWatermarks
from services.inference.decisions import DecisionLog
from services.inference.metrics import Metrics
from services.inference.models import choose_providers
from services.inference.policy import Policy
from services.inference.rollback import RollbackWatch, SequentialTest
from services.inference.settings import Settings
from services.inference.state import State, StateFollower

__all__ = ["main", "open_inference", "run"]

_log = get_logger(__name__)


@contextlib.asynccontextmanager
async def open_inference(settings: Settings) -> AsyncIterator[Inference]:
    """Everything but the servers: topics, decision log, state restored and followed."""
    registry = SchemaRegistry.load()
    topics = Topics.from_settings(settings.kafka)
    metrics = Metrics()
    state = State()
    await wait_for_broker(settings.kafka, 60)
    await ensure_topics(settings.kafka, topics)
    spool = settings.spool_dir / f"decisions-{settings.instance_id}.spool"
    log = DecisionLog(
        lambda: make_producer(settings.kafka, linger_ms=2),
        topics.decisions.name,
        registry.codec("Decision"),
        spool,
        metrics,
        buffer_size=settings.decision_buffer,
        batch_size=settings.decision_batch,
        linger_s=settings.decision_linger_ms / 1000,
        watermarks=DecisionWatermarks(
            WatermarkCodec(registry),
            topics.decisions.name,
            f"admuse-{settings.instance_id}",
            metrics,
            replica=settings.replica,
            replicas=settings.replicas,
            interval_s=settings.decision_watermark_ms / 1000,
        )
        if settings.decision_watermark_ms > 0
        else None,
    )
    creatives_codec = registry.codec("Creative")
    producer = ResilientProducer(lambda: make_producer(settings.kafka), name="creatives")

    async def publish_creative(key: str, record: dict[str, Any]) -> None:
        await producer.send(  # acknowledged, or NotDelivered (a KafkaError)
            topics.creatives.name, value=creatives_codec.encode(record), key=key.encode()
        )

    policy = Policy(
        state,
        exploration_floor=settings.exploration_floor,
        n_draws=settings.thompson_draws,
        refresh_ms=settings.policy_refresh_ms,
        backoff_impressions=settings.backoff_impressions,
        challenger_share=settings.challenger_share,
        challenger_weigh=settings.challenger_weigh,
    )
    providers = _providers(settings.providers)
    curator = Curator(settings, state, policy, metrics, publish_creative, providers)
    follower = StateFollower(settings.kafka, registry, state, metrics, curator.on_model)
    watch = _rollback_watch(settings, state, metrics, curator, producer, registry, topics)
    svc = Inference(settings, state, policy, curator, log, metrics, follower)
    background: list[asyncio.Task[None]] = []
    await producer.start()
    try:
        await log.start()
        await follower.start()
        if settings.policy_refresh_ms > 0:
            background.append(asyncio.create_task(policy.run_refresh(), name="policy-refresh"))
        if settings.curate:
            background.append(asyncio.create_task(curator.run_retirement(), name="retirement"))
        if watch is not None:
            background.append(asyncio.create_task(watch.run(), name="rollback"))
        yield svc
    finally:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await follower.stop()
        await curator.close()
        await log.close()
        await producer.stop()


def _rollback_watch(
    settings: Settings,
    state: State,
    metrics: Metrics,
    curator: Curator,
    producer: Any,
    registry: SchemaRegistry,
    topics: Topics,
) -> RollbackWatch | None:
    """The rollback watch (with `rollback` and `curate` on): a rolled-back model's previous
    ModelPublished record is published again, so a restart serves the restored version."""
    if not (settings.rollback and settings.curate):
        return None
    codec = registry.codec("ModelPublished")

    async def revert(campaign_id: str, bad_version: str) -> str | None:
        restored = await curator.revert(campaign_id, bad_version)
        record = next(
            (r for r in state.history.get(campaign_id, []) if r["version"] == restored), None
        )
        if record is not None:
            await producer.send(
                topics.models.name, codec.encode(record), key=record["model_name"].encode()
            )
        return restored

    test = SequentialTest(
        settings.rollback_alpha,
        settings.rollback_rho,
        settings.rollback_min_impressions,
        settings.rollback_horizon_impressions,
    )
    watch = RollbackWatch(test, state, metrics, revert, settings.rollback_check_s)
    curator.on_swap = watch.on_swap
    return watch


async def become_ready(svc: Inference, loaded: Awaitable[Any] | None = None) -> None:
    """Ready once the state topics are caught up, the models found there are loaded and
    `loaded` (libraries imported in the background) is done."""
    assert svc.follower is not None
    await svc.follower.restored.wait()
    if loaded is not None:
        await loaded
    await svc.curator.idle()
    svc.curator.following = True
    # Everything loaded so far (libraries, models, restored state) lives as long as the process:
    # move it out of the collector's reach so a full collection never walks it mid-request.
    gc.collect()
    gc.freeze()
    svc.ready = True
    svc.ready_event.set()
    _log.info(
        "ready",
        campaigns=len(svc.state.campaigns),
        models={k: b.version for k, b in svc.curator.models.items()},
    )


async def run(settings: Settings) -> None:
    """Serve HTTP (and gRPC unless grpc_port is -1) until cancelled."""
    from services.inference.grpc_api import serve_grpc
    from services.inference.http_api import serve_http

    gc.enable()  # off during the imports (__main__.py)
    scipy_loaded = propensity.preload()  # beside the Kafka work below; ready waits for it
    main_task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, _cancel, main_task, sig)
    async with open_inference(settings) as svc:
        servers = [asyncio.create_task(serve_http(svc), name="http")]
        if settings.grpc_port >= 0:
            servers.append(asyncio.create_task(serve_grpc(svc), name="grpc"))
        ready = asyncio.create_task(
            become_ready(svc, asyncio.to_thread(scipy_loaded.join)), name="readiness"
        )
        try:
            # readiness failing ends the service at once, with its error (the supervisor
            # restarts it), instead of an inference that answers 503 forever in silence
            done, _ = await asyncio.wait([*servers, ready], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # readiness failed, or a server stopped on its own: say why
            if done == {ready}:
                done, _ = await asyncio.wait(servers, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()
        finally:
            for task in [ready, *servers]:
                task.cancel()
            await asyncio.gather(ready, *servers, return_exceptions=True)


def _env_name(loc: tuple[int | str, ...]) -> str:
    """The environment variable a settings error is about."""
    if not loc:
        return "settings"
    first = str(loc[0])
    if first.isupper():  # an alias such as ADMUSE_PSEUDONYM_SECRET
        return first
    if first in ("kafka", "log") and len(loc) > 1:
        return f"ADMUSE_{first.upper()}_{str(loc[1]).upper()}"
    return f"ADMUSE_INFERENCE_{first.upper()}"


def _providers(wanted: str) -> list[str]:
    if wanted == "cpu":
        return ["CPUExecutionProvider"]
    chosen = choose_providers()
    if wanted == "cuda" and "CUDAExecutionProvider" not in chosen:
        _log.warning(
            "cuda_not_usable",
            detail="CUDA asked for but not usable here; running ONNX models on the CPU",
        )
    return chosen


def _cancel(task: asyncio.Task[None] | None, sig: signal.Signals) -> None:
    _log.info("stopping", signal=sig.name)
    if task is not None:
        task.cancel()


def main() -> None:
    try:
        settings = Settings()  # type: ignore[call-arg]  # required values come from the env
    except ValidationError as exc:
        problems = "; ".join(f"{_env_name(e['loc'])}: {e['msg']}" for e in exc.errors())
        raise SystemExit(
            f"inference settings are incomplete or wrong: {problems} "
            "(see the README table 'inference' for every ADMUSE_INFERENCE_* variable)"
        ) from None
    configure_logging(settings.log.level, settings.log.format, service="inference")
    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
        try:
            try:
                import uvloop  # faster event loop where installed (the inference extra has it)
            except ImportError:
                asyncio.run(run(settings))
            else:
                uvloop.run(run(settings))
        except Exception:
            _log.exception("inference_failed")  # one structured record, then a non-zero exit
            raise SystemExit(1) from None
