"""Benchmark: events/s through ingestion (JSON and Avro inputs) against a bare aiokafka
consume→produce passthrough, measured in the same run on the same broker.

Each repeat fills a fresh raw topic (own topic prefix) with N valid, consenting events, then:

- passthrough (baseline): one aiokafka consumer reads the raw topic and an idempotent acks=all
  producer copies every value unchanged to another topic; time from the first record read to
  the last acknowledged send;
- ingestion: `python -m services.ingestion` (a real process, transactions, dedup, Avro
  encoding) consumes the same kind of topic; rate from its /metrics `events_in` counter
  between the first committed batch and the last (process start-up is not counted), once per
  `--workers` setting (ADMUSE_INGESTION_TRANSFORM_WORKERS; `auto` is the service's default,
  `0` transforms in the service's own process).

Target: ingestion >= 0.5 x passthrough. Quotes medians over repeats, and the median of the
per-repeat ratios (each ingestion run against the passthrough run just before it: on a shared
machine the load drifts between repeats more than within one).

    python bench/bench_ingestion.py [--events 30000] [--repeats 3] [--workers auto,0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from aiokafka import TopicPartition  # noqa: E402

from services.common.codec import SchemaRegistry  # noqa: E402
from services.common.kafka import (  # noqa: E402
    ensure_topics,
    make_consumer,
    make_producer,
    wait_for_broker,
)
from services.common.settings import KafkaSettings  # noqa: E402
from services.common.topics import Topics  # noqa: E402
from tests.integration.ingestion_harness import IngestionProcess, sum_metric  # noqa: E402


def _events(n: int, fmt: str) -> list[bytes]:
    codec = SchemaRegistry.load().codec("AdEvent", 1)
    now = int(time.time() * 1000)
    out = []
    for i in range(n):
        ev = {
            "event_id": f"b-{uuid.uuid4().hex}",
            "type": "impression" if i % 10 else "click",
            "occurred_at": now - i,
            "campaign_id": "bench",
            "creative_id": f"cr-{i % 20}",
            "decision_id": f"d-{i}",
            "user_id": f"app-user-{i % 5000}",
            "consent": {"personalization": True},
            "context": {"country": "DE", "device": "mobile", "age_band": "25-34"},
            "source": "bench",
        }
        out.append(codec.encode(ev) if fmt == "avro" else json.dumps(ev).encode())
    return out


async def _fresh(base: KafkaSettings, values: list[bytes]) -> tuple[KafkaSettings, Topics]:
    kafka = base.model_copy(update={"topic_prefix": f"bench{uuid.uuid4().hex[:8]}."})
    topics = Topics.from_settings(kafka)
    await ensure_topics(kafka, topics)
    producer = make_producer(kafka, linger_ms=20)
    await producer.start()
    try:
        for i, value in enumerate(values):
            await producer.send(topics.events_raw.name, value, key=str(i).encode())
        await producer.flush()
    finally:
        await producer.stop()
    return kafka, topics


async def passthrough(base: KafkaSettings, values: list[bytes]) -> float:
    kafka, topics = await _fresh(base, values)
    consumer = make_consumer(kafka, group_id=None, max_poll_records=2000)
    producer = make_producer(kafka)
    await consumer.start()
    await producer.start()
    try:
        tps = [
            TopicPartition(topics.events_raw.name, p) for p in range(topics.events_raw.partitions)
        ]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen, started = 0, None
        while seen < len(values):
            batches = await consumer.getmany(timeout_ms=500, max_records=2000)
            if started is None and batches:
                started = time.perf_counter()
            futures = []
            for records in batches.values():
                for rec in records:
                    futures.append(await producer.send(topics.events.name, rec.value, key=rec.key))
                seen += len(records)
            if futures:
                await asyncio.gather(*futures)
        assert started is not None
        return len(values) / (time.perf_counter() - started)
    finally:
        await consumer.stop()
        await producer.stop()


async def ingestion(base: KafkaSettings, values: list[bytes], log: Path, **env: str) -> float:
    kafka, _topics = await _fresh(base, values)
    svc = IngestionProcess(kafka, log, **env)
    svc.start()
    try:
        first: tuple[float, float] | None = None
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                done = sum_metric(await svc.metrics(), "admuse_ingestion_events_in_total")
            except Exception:  # not listening yet
                done = 0.0
            now = time.perf_counter()
            if done and first is None:
                first = (now, done)
            if done >= len(values):
                assert first is not None
                if done == first[1]:  # all in one go: cannot tell a rate
                    raise RuntimeError("too few events to measure; raise --events")
                return (done - first[1]) / (now - first[0])
            if not svc.alive:
                raise RuntimeError(svc.log_tail())
            await asyncio.sleep(0.1)
        raise TimeoutError("ingestion did not finish in 300 s")
    finally:
        svc.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-batch", type=int, help="ADMUSE_INGESTION_MAX_BATCH for the run")
    parser.add_argument(
        "--workers",
        default="auto,0",
        help="ADMUSE_INGESTION_TRANSFORM_WORKERS settings to run, comma-separated "
        "(auto: the service's default; 0: all in the service's process)",
    )
    args = parser.parse_args()
    base = KafkaSettings()
    await wait_for_broker(base, 30)
    data = {fmt: _events(args.events, fmt) for fmt in ("json", "avro")}
    env = {"ADMUSE_INGESTION_MAX_BATCH": str(args.max_batch)} if args.max_batch else {}
    variants = {}  # label -> (input format, environment)
    for workers in args.workers.split(","):
        for fmt in ("json", "avro"):
            extra = {} if workers == "auto" else {"ADMUSE_INGESTION_TRANSFORM_WORKERS": workers}
            variants[f"{fmt}, workers={workers}"] = (fmt, {**env, **extra})
    rates: dict[str, list[float]] = {"passthrough": [], **{label: [] for label in variants}}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            rates["passthrough"].append(await passthrough(base, data["json"]))
            for i, (label, (fmt, run_env)) in enumerate(variants.items()):
                log = Path(tmp) / f"{r}-{i}.log"
                rates[label].append(await ingestion(base, data[fmt], log, **run_env))
            print(f"repeat {r + 1}: " + ", ".join(f"{k} {v[-1]:,.0f}/s" for k, v in rates.items()))
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"\n{args.events:,} events x {args.repeats} repeats, medians:")
    print(f"  passthrough (aiokafka consume->produce): {med['passthrough']:,.0f} events/s")
    for label in variants:
        ratio = med[label] / med["passthrough"]
        paired = statistics.median(
            r / p for r, p in zip(rates[label], rates["passthrough"], strict=True)
        )
        verdict = "meets" if ratio >= 0.5 else "MISSES"
        print(
            f"  ingestion, {label} input: {med[label]:,.0f} events/s = {ratio:.2f} x "
            f"passthrough ({verdict} the 0.5 target); median of per-repeat ratios {paired:.2f}"
        )


if __name__ == "__main__":
    asyncio.run(main())
