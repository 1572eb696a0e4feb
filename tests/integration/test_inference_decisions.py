"""The decision log keeps every decision while Kafka is away and replays them in order.

"Kafka away" is a producer pointed at a port where nothing listens; "back" is the real broker.
The shared broker is never stopped.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from services.common.codec import SchemaRegistry
from services.common.kafka import make_producer
from services.common.settings import KafkaSettings
from services.common.topics import Topics
from services.inference.decisions import DecisionLog
from services.inference.metrics import Metrics
from tests.integration.inference_harness import DecisionReader, free_port
from tests.polling import eventually

pytestmark = pytest.mark.integration


def _decision(i: int) -> dict[str, Any]:
    return {
        "decision_id": f"d{i:05d}", "decided_at": int(time.time() * 1000),
        "campaign_id": "spring", "segment": "*", "context": {}, "user_id": "p" * 64,
        "creative_id": f"c{i % 3}", "propensity": 0.5, "arm": "optimized",
        "policy": "thompson", "policy_version": "v", "model_version": None,
        "attribution_window_ms": 1000, "candidates": 3,
    }  # fmt: skip


class _Broker:
    """Where the log's producers connect: a dead port until `up()`."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self.live = kafka
        self.dead = kafka.model_copy(
            update={"bootstrap_servers": f"127.0.0.1:{free_port()}", "request_timeout_ms": 1000}
        )
        self.current = self.dead

    def up(self) -> None:
        self.current = self.live

    def factory(self) -> AIOKafkaProducer:
        return make_producer(self.current)


def _log(broker: _Broker, topics: Topics, spool: Path, metrics: Metrics, **kw: Any) -> DecisionLog:
    codec = SchemaRegistry.load().codec("Decision")
    return DecisionLog(
        broker.factory,
        topics.decisions.name,
        codec,
        spool,
        metrics,
        send_timeout_s=3.0,
        retry_backoff_s=(0.05, 0.3),
        **kw,
    )


def _assert_in_order(reader: DecisionReader, n: int) -> None:
    ids = [r["decision_id"] for r in reader.records]
    assert set(ids) == {f"d{i:05d}" for i in range(n)}  # every one, none lost
    by_partition: dict[int, list[str]] = {}
    for did in dict.fromkeys(ids):  # first delivery of each (at-least-once allows repeats)
        by_partition.setdefault(reader.partitions[did], []).append(did)
    for seq in by_partition.values():
        assert seq == sorted(seq), "decisions replayed out of submission order"


async def test_buffer_spills_to_spool_and_replays_in_order_when_kafka_returns(
    kafka: KafkaSettings, topics: Topics, tmp_path: Path
) -> None:
    broker, metrics = _Broker(kafka), Metrics()
    spool = tmp_path / "decisions.spool"
    log = _log(broker, topics, spool, metrics, buffer_size=50, batch_size=20)
    await log.start()
    started = time.perf_counter()
    for i in range(120):
        log.submit(_decision(i))
    assert time.perf_counter() - started < 1.0  # submit never waits for Kafka
    assert log.pending == 120
    assert spool.stat().st_size > 0  # 70 decisions beyond the memory bound are on disk
    assert metrics.decisions_spooled._value.get() == 70
    await eventually(
        lambda: metrics.decision_send_failures._value.get() >= 2, 30, "two failed sends", 0.05
    )
    assert log.pending == 120  # nothing dropped while Kafka is away
    broker.up()
    await eventually(lambda: log.pending == 0, 30, "every decision sent", 0.05)
    assert not spool.exists()  # drained spool is removed
    await log.close()
    async with DecisionReader(kafka, topics.decisions.name) as reader:
        await reader.wait_for(lambda rs: len({r["decision_id"] for r in rs}) >= 120)
    _assert_in_order(reader, 120)


async def test_spooled_decisions_survive_a_restart(
    kafka: KafkaSettings, topics: Topics, tmp_path: Path
) -> None:
    broker = _Broker(kafka)
    spool = tmp_path / "decisions.spool"
    first = _log(broker, topics, spool, Metrics(), buffer_size=10, batch_size=10)
    await first.start()
    for i in range(30):
        first.submit(_decision(i))
    await first.close(flush_timeout_s=0.5)  # Kafka still away: everything goes to the spool
    assert spool.exists() and first.pending == 30
    broker.up()
    second = _log(broker, topics, spool, Metrics(), buffer_size=10, batch_size=7)
    await second.start()
    for i in range(30, 35):
        second.submit(_decision(i))
    await eventually(lambda: second.pending == 0, 30, "every decision sent", 0.05)
    await second.close()
    async with DecisionReader(kafka, topics.decisions.name) as reader:
        await reader.wait_for(lambda rs: len({r["decision_id"] for r in rs}) >= 35)
    _assert_in_order(reader, 35)


async def _trickle_batches(log: DecisionLog, first: int, n: int) -> list[int]:
    """Submit n decisions ~2 ms apart (a steady request stream); the batch sizes sent."""
    sizes: list[int] = []
    deliver = log._deliver

    async def counting(producer: AIOKafkaProducer, batch: list[Any]) -> None:
        sizes.append(len(batch))
        await deliver(producer, batch)

    log._deliver = counting  # type: ignore[method-assign]
    await log.start()
    log.submit(_decision(first))  # warm-up: producer started, partition leaders known
    await eventually(lambda: log.pending == 0, 30, "every decision sent", 0.05)
    sizes.clear()
    for i in range(first + 1, first + n):
        log.submit(_decision(i))
        await asyncio.sleep(0.002)  # pacing: a request stream of ~500/s, not a wait
    await eventually(lambda: log.pending == 0, 30, "every decision sent", 0.05)
    await log.close()
    return sizes


async def test_linger_gathers_a_request_stream_into_few_large_batches(
    kafka: KafkaSettings, topics: Topics, tmp_path: Path
) -> None:
    broker = _Broker(kafka)
    broker.up()
    eager = await _trickle_batches(
        _log(broker, topics, tmp_path / "a.spool", Metrics(), linger_s=0.0), 0, 150
    )
    lingering = await _trickle_batches(
        _log(broker, topics, tmp_path / "b.spool", Metrics(), linger_s=0.1), 150, 150
    )
    assert sum(eager) == sum(lingering) == 149  # nothing lost either way
    # Same stream, same broker: the lingering log sends far fewer, larger batches.
    assert len(lingering) * 2 < len(eager), (eager, lingering)
    assert statistics.median(lingering) > 3 * statistics.median(eager), (eager, lingering)
    async with DecisionReader(kafka, topics.decisions.name) as reader:
        await reader.wait_for(lambda rs: len({r["decision_id"] for r in rs}) >= 300)
    _assert_in_order(reader, 300)
