"""Benchmark: rewards/s through the features join on one worker, and the delay from a click
being produced to its Reward being produced (p50/p95, Kafka record timestamps).

Baseline, measured in the same run on the same broker: a bare aiokafka relay (consume
admuse.events, produce one record per event, no state) — the cost of one Kafka hop in Python.
The join does that hop twice (events → events-by-decision → join) plus its table writes.

Windows close by watermarks: a source writes one into every events partition every 0.2 s, as
ingestion does (ADMUSE_INGESTION_WATERMARK_INTERVAL_S), so the mechanism's cost (the records,
the ticks carrying them to the join, the windows they close) is part of what is measured.

    python bench/bench_features.py            # broker from ADMUSE_KAFKA_BOOTSTRAP_SERVERS
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.common.codec import SchemaRegistry
from services.common.kafka import ensure_topics, make_consumer, make_producer
from services.common.settings import KafkaSettings
from services.common.topics import Topics, TopicSpec
from services.common.watermark import WatermarkCodec
from tests.integration.features_worker import (
    FeaturesWorker,
    TopicReader,
    WatermarkSource,
    decision,
    event,
    produce,
)

N = 400  # clicks per repeat
REPEATS = 3
PACED_RATE = 20.0  # clicks/s for the latency rounds (below the join's capacity here)


def _sched(pid: int | None) -> tuple[float, float]:
    """(seconds on a CPU, seconds runnable but waiting for one) of a process, all threads;
    Linux only (zeros elsewhere). On a shared machine the second one says how starved it was."""
    run = wait = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                a, b, _ = f.read().split()
            run, wait = run + int(a), wait + int(b)
    except (OSError, ValueError):
        pass
    return run / 1e9, wait / 1e9


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def _clicks(
    kafka: KafkaSettings,
    topics: Topics,
    registry: SchemaRegistry,
    decisions: list[dict],
    rate: float | None = None,
) -> dict[str, int]:
    """Produce one click per decision, as fast as possible or `rate` per second; return
    decision_id -> record timestamp."""
    codec = registry.codec("AdEvent")
    producer = make_producer(kafka)
    await producer.start()
    t0 = time.monotonic()
    try:
        futures = []
        for i, d in enumerate(decisions):
            if rate:
                await asyncio.sleep(max(0.0, t0 + i / rate - time.monotonic()))  # pacing
            value = codec.encode(event(d))
            fut = await producer.send(topics.events.name, key=d["user_id"].encode(), value=value)
            futures.append((d["decision_id"], fut))
        return {k: (await f).timestamp for k, f in futures}
    finally:
        await producer.stop()


async def _join_round(
    kafka: KafkaSettings,
    topics: Topics,
    registry: SchemaRegistry,
    worker: FeaturesWorker,
    rewards: TopicReader,
    rate: float | None = None,
) -> tuple:
    n = N if rate is None else int(PACED_RATE * 5)
    decisions = [
        decision("bench", f"cr{i % 8}", user=f"u{i % 97}", window_ms=600_000) for i in range(n)
    ]
    opened = await worker.metric("admuse_features_decisions_total")
    await produce(
        kafka,
        topics.decisions.name,
        registry.codec("Decision"),
        [(d["decision_id"], d) for d in decisions],
    )
    deadline = time.monotonic() + 120
    while await worker.metric("admuse_features_decisions_total") < opened + n:
        assert time.monotonic() < deadline, "decisions not consumed in 120 s"
        await asyncio.sleep(0.2)
    pid = worker.proc.pid if worker.proc else None
    cpu0 = _sched(pid)
    sent = await _clicks(kafka, topics, registry, decisions, rate)
    await rewards.until(lambda r: set(sent) <= {k for k, _, _ in r.records}, timeout_s=300)
    cpu1 = _sched(pid)
    got = {k: ts for k, _, ts in rewards.records if k in sent}
    delays = [(got[k] - sent[k]) / 1000 for k in sent]
    span = (max(got.values()) - min(sent.values())) / 1000
    cpu_ms = (cpu1[0] - cpu0[0]) * 1000 / n  # worker CPU per click (+ the ticks meanwhile)
    starved = (cpu1[1] - cpu0[1]) / max(1e-9, cpu1[0] - cpu0[0])
    return n / span, _pct(delays, 0.5), _pct(delays, 0.95), cpu_ms, starved


async def _relay_round(
    kafka: KafkaSettings, topics: Topics, registry: SchemaRegistry, out_topic: str
) -> tuple:
    """Baseline: consume events, produce one record each to `out_topic` (keyed the same)."""
    decisions = [decision("base", f"cr{i % 8}", user=f"u{i % 97}") for i in range(N)]
    consumer = make_consumer(
        kafka,
        topics.events.name,
        group_id=f"bench-relay-{uuid.uuid4()}",
        auto_offset_reset="latest",
    )
    producer = make_producer(kafka)
    await consumer.start()
    await producer.start()
    for _ in range(600):  # wait for the group assignment (30 s at most)
        if consumer.assignment():
            break
        await asyncio.sleep(0.05)
    for tp in consumer.assignment():
        await consumer.position(tp)
    done = asyncio.Event()
    seen = 0
    control = WatermarkCodec(registry)

    async def relay() -> None:
        nonlocal seen
        while seen < N:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for r in records:
                    if control.is_watermark(r.value):
                        continue  # a reader of admuse.events skips the watermarks
                    d_id = registry.codec("AdEvent").decode(r.value)["decision_id"]
                    await producer.send(out_topic, key=d_id.encode(), value=r.value)
                    seen += 1
        await producer.flush()
        done.set()

    task = asyncio.create_task(relay())
    async with TopicReader(kafka, out_topic, "AdEvent", registry) as out:
        sent = await _clicks(kafka, topics, registry, decisions)
        await asyncio.wait_for(done.wait(), 120)
        await out.until(lambda r: set(sent) <= {k for k, _, _ in r.records}, timeout_s=60)
        got = {k: ts for k, _, ts in out.records if k in sent}
    await task
    await consumer.stop()
    await producer.stop()
    delays = [(got[k] - sent[k]) / 1000 for k in sent]
    span = (max(got.values()) - min(sent.values())) / 1000
    return N / span, _pct(delays, 0.5), _pct(delays, 0.95)


async def main() -> None:
    kafka = KafkaSettings().model_copy(update={"topic_prefix": f"bench{uuid.uuid4().hex[:6]}."})
    registry = SchemaRegistry.load()
    topics = Topics.from_settings(kafka)
    relay_topic = TopicSpec(
        f"{kafka.topic_prefix}bench.relay", 4, "delete", "decision_id", "AdEvent"
    )
    await ensure_topics(kafka, [*topics, relay_topic])
    worker = FeaturesWorker(
        kafka, Path(tempfile.mkdtemp(prefix="bench-features-")), ADMUSE_LOG_LEVEL="WARNING"
    )
    worker.start()
    try:
        await worker.wait_ready(180)
        join, paced, base = [], [], []
        async with (
            WatermarkSource(kafka, topics.events.name, skew_ms=1000, interval_s=0.2),
            TopicReader(kafka, topics.rewards.name, "Reward", registry) as rewards,
        ):
            for rnd in range(REPEATS):
                join.append(await _join_round(kafka, topics, registry, worker, rewards))
                paced.append(
                    await _join_round(kafka, topics, registry, worker, rewards, PACED_RATE)
                )
                base.append(await _relay_round(kafka, topics, registry, relay_topic.name))
                print(
                    f"round {rnd}: burst {join[-1][0]:.0f} rewards/s (p50 "
                    f"{join[-1][1] * 1000:.0f} ms, worker {join[-1][3]:.1f} ms CPU/click, "
                    f"waited {join[-1][4]:.1f}x that for a CPU) | paced {PACED_RATE:.0f}/s: p50 "
                    f"{paced[-1][1] * 1000:.0f} ms p95 {paced[-1][2] * 1000:.0f} ms | relay "
                    f"{base[-1][0]:.0f}/s p50 {base[-1][1] * 1000:.0f} ms",
                    flush=True,
                )
    finally:
        worker.stop()
    med = [statistics.median(x[i] for x in join) for i in range(5)]
    pmed = [statistics.median(x[i] for x in paced) for i in range(3)]
    bmed = [statistics.median(x[i] for x in base) for i in range(3)]
    print(f"\nfeatures join, one worker, medians of {REPEATS}:")
    print(
        f"  burst of {N} clicks: {med[0]:.0f} rewards/s "
        f"(click->Reward p50 {med[1] * 1000:.0f} ms, p95 {med[2] * 1000:.0f} ms, queueing)"
    )
    print(
        f"  worker CPU {med[3]:.1f} ms per click; it waited {med[4]:.1f}x as long for a CPU "
        f"(machine load: {os.getloadavg()[0]:.1f})"
    )
    print(
        f"  paced {PACED_RATE:.0f} clicks/s: click->Reward p50 {pmed[1] * 1000:.0f} ms, "
        f"p95 {pmed[2] * 1000:.0f} ms"
    )
    print(
        f"baseline bare aiokafka relay (burst of {N}): {bmed[0]:.0f} records/s, "
        f"p50 {bmed[1] * 1000:.0f} ms, p95 {bmed[2] * 1000:.0f} ms"
    )
    print(f"ratio join/relay throughput: {med[0] / bmed[0]:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
