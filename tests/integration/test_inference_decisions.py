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

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from services.common.codec import SchemaRegistry
from services.common.kafka import make_producer
from services.common.settings import KafkaSettings
from services.common.topics import Topics
from services.common.watermark import WatermarkCodec
from services.inference.decision_watermarks import DecisionWatermarks
from services.inference.decisions import DecisionLog
from services.inference.metrics import Metrics
from tests.integration.inference_harness import (
    API_KEY,
    DecisionReader,
    InferenceProcess,
    free_port,
    seed_campaign,
)
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
    dispatch = log._dispatch

    async def counting(producer: AIOKafkaProducer, batch: Any) -> None:
        sizes.append(sum(f is None for f in batch.futures))
        await dispatch(producer, batch)

    log._dispatch = counting  # type: ignore[method-assign]
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


async def test_late_acknowledgements_are_waited_on_not_resent(
    kafka: KafkaSettings, topics: Topics, tmp_path: Path
) -> None:
    """A send timeout far below the broker's round trip: every batch is "late" many times
    over. The log waits on the same sends; a resend would put second copies in the topic."""
    broker, metrics = _Broker(kafka), Metrics()
    broker.up()
    codec = SchemaRegistry.load().codec("Decision")
    log = DecisionLog(
        broker.factory, topics.decisions.name, codec, tmp_path / "d.spool", metrics,
        batch_size=50, send_timeout_s=0.0005, retry_backoff_s=(0.0005, 0.001),
    )  # fmt: skip
    await log.start()
    for i in range(400):
        log.submit(_decision(i))
    await eventually(lambda: log.pending == 0, 30, "every decision sent", 0.02)
    assert metrics.decision_send_failures._value.get() > 0  # acknowledgements were late
    await log.close()
    async with DecisionReader(kafka, topics.decisions.name) as reader:
        await reader.wait_for(lambda rs: len({r["decision_id"] for r in rs}) >= 400)
        await reader.poll()  # a resent copy would have been written before the first copies
    ids = [r["decision_id"] for r in reader.records]
    assert len(ids) == len(set(ids)) == 400, "a decision was written twice"
    assert metrics.decisions_sent._value.get() == 400


async def test_acked_submit_resolves_after_kafka_and_fails_at_close_when_away(
    kafka: KafkaSettings, topics: Topics, tmp_path: Path
) -> None:
    from services.inference.decisions import NotLogged

    broker = _Broker(kafka)
    spool = tmp_path / "d.spool"
    away = _log(broker, topics, spool, Metrics())
    await away.start()
    waiter = away.submit(_decision(0), acked=True)
    assert waiter is not None
    await eventually(lambda: away.pending == 1 and not waiter.done(), 5, "queued, unacked", 0.05)
    await away.close(flush_timeout_s=0.5)
    with pytest.raises(NotLogged):
        await waiter
    assert spool.exists()  # kept for the next start, which sends it
    broker.up()
    back = _log(broker, topics, spool, Metrics(), linger_s=0.5)
    await back.start()
    acked = back.submit(_decision(1), acked=True)
    assert acked is not None
    await asyncio.wait_for(acked, 20)
    async with DecisionReader(kafka, topics.decisions.name) as reader:
        # acknowledged means readable now, without waiting for anything else
        await reader.wait_for(lambda rs: {r["decision_id"] for r in rs} >= {"d00000", "d00001"})
    await back.close()


async def _answered_then_killed(
    kafka: KafkaSettings, topics: Topics, workdir: Path, **env: str
) -> tuple[list[str], DecisionReader]:
    """Decide 30 times through a real inference process, SIGKILL it right after the last
    answer; the answered decision ids and a reader of what admuse.decisions holds."""
    await seed_campaign(kafka, topics, "spring")
    proc = InferenceProcess(kafka, workdir, ADMUSE_INFERENCE_DECISION_LINGER_MS="1000", **env)
    await proc.start()
    answered: list[str] = []
    try:
        async with httpx.AsyncClient(
            base_url=proc.url, headers={"X-API-Key": API_KEY}, timeout=10.0
        ) as client:
            for i in range(30):
                body = {"campaign_id": "spring", "user_id": f"u{i}", "context": {}}
                resp = await client.post("/v1/decide", json=body)
                assert resp.status_code == 200, resp.text
                answered.append(resp.json()["decision_id"])
    finally:
        proc.kill()
    reader = DecisionReader(kafka, topics.decisions.name)
    return answered, reader


async def test_sigkill_after_acked_decides_leaves_exactly_one_record_each(
    kafka: KafkaSettings, topics: Topics, tmp_path: Path
) -> None:
    answered, reader = await _answered_then_killed(
        kafka, topics, tmp_path / "acked", ADMUSE_INFERENCE_DECISION_ACK="true"
    )
    async with reader:
        await reader.wait_for(lambda rs: {r["decision_id"] for r in rs} >= set(answered))
        await reader.poll()
    ids = [r["decision_id"] for r in reader.records]
    assert sorted(ids) == sorted(answered)  # every answered Decide, exactly once


async def test_sigkill_without_ack_loses_the_lingering_decisions(
    kafka: KafkaSettings, topics: Topics, tmp_path: Path
) -> None:
    """The documented bound of the default: decisions answered within the last linger are
    only in memory; SIGKILL loses them (the acked mode above is the remedy)."""
    answered, reader = await _answered_then_killed(kafka, topics, tmp_path / "lingering")
    async with reader:
        for _ in range(5):
            await reader.poll()
    assert len({r["decision_id"] for r in reader.records}) < len(answered)


def _watermarked_log(
    broker: _Broker, topics: Topics, spool: Path, metrics: Metrics, **kw: Any
) -> DecisionLog:
    marks = DecisionWatermarks(
        WatermarkCodec(SchemaRegistry.load()), topics.decisions.name, "admuse-inference-t",
        metrics, replica=1, replicas=2, interval_s=0.001,
    )  # fmt: skip
    return _log(broker, topics, spool, metrics, watermarks=marks, **kw)


def _assert_watermarks_true(reader: DecisionReader) -> None:
    """Each decision watermark's claim covers only decisions already before it in its
    partition (nothing with decided_at <= claim comes after it)."""
    at = {
        (p, off): _ms(r["decided_at"])
        for (p, off), r in zip(reader.offsets, reader.records, strict=True)
    }
    for p, off, wm in reader.watermarks:
        assert wm["source"] == "inference" and wm["inputs"] == 2, wm
        [claim] = wm["claims"]
        assert claim["input"] == 1
        late = [o for (q, o), t in at.items() if q == p and o > off and t <= claim["watermark_ms"]]
        assert not late, f"partition {p}: decisions after a watermark that claimed them"


def _ms(value: Any) -> int:
    return round(value.timestamp() * 1000)


async def test_decision_watermarks_hold_for_spooled_decisions_and_advance_when_idle(
    kafka: KafkaSettings, topics: Topics, tmp_path: Path
) -> None:
    """Decisions decided a minute ago wait in the spool (Kafka away); the restarted log sends
    them in batches, stating a watermark after each batch: none may claim a spooled decision
    before it is written. Idle afterwards, the claim passes the wall clock of the idle time."""
    broker, spool = _Broker(kafka), tmp_path / "d.spool"
    old = int(time.time() * 1000) - 60_000
    first = _log(broker, topics, spool, Metrics(), buffer_size=5)
    await first.start()
    for i in range(40):
        first.submit({**_decision(i), "decided_at": old + i * 1000})
    await first.close(flush_timeout_s=0.3)
    assert first.pending == 40
    broker.up()
    metrics = Metrics()
    second = _watermarked_log(broker, topics, spool, metrics, batch_size=3)
    await second.start()
    await eventually(lambda: second.pending == 0, 30, "spool replayed", 0.02)
    idle_from = int(time.time() * 1000)
    await eventually(
        lambda: metrics.decision_watermark._value.get() * 1000 > idle_from + 300,
        10, "the watermark advancing while idle", 0.05,
    )  # fmt: skip
    await second.close()
    async with DecisionReader(kafka, topics.decisions.name) as reader:
        await reader.wait_for(lambda rs: len(rs) >= 40)
        for _ in range(3):
            await reader.poll()
    claims = [wm["claims"][0]["watermark_ms"] for _p, _o, wm in reader.watermarks]
    assert any(c < old + 39_000 for c in claims)  # stated while the spool still held some
    assert max(claims) > idle_from + 300  # and advanced while idle
    partitions = {p for p, _o, _w in reader.watermarks}
    assert partitions == set(range(topics.decisions.partitions))  # into every partition
    _assert_watermarks_true(reader)
