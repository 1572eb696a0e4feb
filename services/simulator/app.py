"""Wiring of the simulator: Kafka producer, HTTP client, the player.

The campaign is applied by the CLI (`admuse campaign apply`, `admuse simulate`, `admuse demo`),
not here: the simulator only plays it.

`simulate()` is what `python -m services.simulator`, `admuse simulate` and `admuse demo` run.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from pydantic import ValidationError

from services.common.campaign import SpecError
from services.common.codec import SchemaRegistry
from services.common.health import HealthServer
from services.common.kafka import ensure_topics, make_producer, wait_for_broker
from services.common.logging import configure_logging, get_logger
from services.common.producer import ResilientProducer
from services.common.settings import KafkaSettings
from services.common.source_watermark import HeldEvents, SourceWatermarks
from services.common.stall import watching_shutdown
from services.common.topics import Topics
from services.common.watermark import WatermarkCodec
from services.simulator.player import LiveStats, Player
from services.simulator.scenario import Scenario, load_scenario
from services.simulator.settings import Settings

__all__ = ["main", "simulate", "summary_of"]


async def simulate(
    scenario: Scenario,
    *,
    kafka: KafkaSettings,
    decide_url: str,
    api_key: str,
    run_dir: Path,
    seed: int = 0,
    duration_s: float = 60.0,
    rate: float | None = None,
    max_in_flight: int = 64,
    drain_s: float = 15.0,
    source: str = "admuse-simulator",
    stop: asyncio.Event | None = None,
    on_start: Callable[[Player], None] | None = None,
    send_timeout_s: float = 60.0,
) -> LiveStats:
    """Play `scenario` against the Decide API at `decide_url`; results land in `run_dir`."""
    log = get_logger("simulator")
    topics = Topics.from_settings(kafka)
    await wait_for_broker(kafka, 30)
    await ensure_topics(kafka, topics)
    producer = ResilientProducer(
        lambda: make_producer(kafka, linger_ms=20),
        name="simulator",
        delivery_timeout_s=send_timeout_s,
    )
    await producer.start()
    # a live source of the raw topic: its claims stay below every event it still holds
    held = HeldEvents()
    watermarks = SourceWatermarks(
        producer,
        topic=topics.events_raw.name,
        codec=WatermarkCodec(SchemaRegistry.load()),
        name=f"{source}-{uuid.uuid4().hex[:12]}",
        held=held,
    )
    watermarks.start()
    ended = False
    limits = httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=max_in_flight)
    try:
        async with httpx.AsyncClient(
            base_url=decide_url, headers={"X-API-Key": api_key}, timeout=10.0, limits=limits
        ) as client:

            async def send(key: bytes, value: bytes) -> None:
                await producer.send(topics.events_raw.name, value, key=key)  # acked or raises

            player = Player(
                scenario,
                client=client,
                send=send,
                results_path=run_dir / "results.jsonl",
                seed=seed,
                rate=rate,
                max_in_flight=max_in_flight,
                source=source,
                held=held,
            )
            if on_start:
                on_start(player)
            stats = await player.run(duration_s, stop, drain_s=drain_s)
            ended = True  # every event acknowledged or counted as not written
    finally:
        await watermarks.close(end=ended)
        await producer.stop()
    summary = summary_of(stats)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    log.info("simulation_done", **{k: v for k, v in summary.items() if k != "arms"})
    return stats


def summary_of(stats: LiveStats) -> dict[str, Any]:
    """A JSON-ready digest of a run's live counters."""
    lat, lag = sorted(stats.latencies_ms), sorted(stats.loop_lag_ms)
    slates = (  # previews of several variants only (audience.slate > 1)
        {"slates": {"previews": stats.slates, "short": stats.slates_short, "votes": stats.votes}}
        if stats.slates
        else {}
    )
    return {
        "requests": stats.requests,
        "decide_latency_ms": {"p50": _q(lat, 0.5), "p99": _q(lat, 0.99)},
        "simulator_loop_lag_ms": {"p50": _q(lag, 0.5), "p99": _q(lag, 0.99)},
        "skipped": stats.skipped,
        "held": dict(stats.held),
        "errors": dict(stats.errors),
        "events_sent": stats.events_sent,
        "events_unsent": stats.events_unsent,
        "clicks_unsent": stats.clicks_unsent,
        "generated_served": stats.generated_served,
        **slates,
        "model_versions": sorted(stats.model_versions),
        "arms": {
            arm: {
                "impressions": a.impressions,
                "never_shown": a.unshown,
                "clicks": a.clicks,
                "ctr": a.ctr,
                "conversions": a.conversions,
                "expected_reward": a.expected_reward,
                "regret": a.regret,
            }
            for arm, a in sorted(stats.arms.items())
        },
    }


def _q(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    return round(sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))], 2)


def main() -> None:
    try:
        settings = Settings()
        scenario = load_scenario(settings.scenario)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        print(f"simulator cannot start: {problems} (variables ADMUSE_SIMULATOR_*)", file=sys.stderr)
        raise SystemExit(2) from None
    except SpecError as exc:
        print(f"simulator cannot start: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings.log.level, settings.log.format, service="simulator")

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        playing = asyncio.Event()
        health = None
        if settings.health_port:
            health = HealthServer(settings.health_host, settings.health_port, playing.is_set)
            health.start()
        async with watching_shutdown(stop):
            try:
                await simulate(
                    scenario,
                    kafka=settings.kafka,
                    decide_url=settings.decide_url,
                    api_key=settings.api_key.get_secret_value(),
                    run_dir=settings.run_dir,
                    seed=settings.seed,
                    duration_s=settings.duration_s,
                    rate=settings.rate,
                    max_in_flight=settings.max_in_flight,
                    drain_s=settings.drain_s,
                    source=settings.source,
                    stop=stop,
                    on_start=lambda _player: playing.set(),
                    send_timeout_s=settings.send_timeout_s,
                )
            finally:
                if health is not None:
                    health.stop()

    asyncio.run(run())
