"""Kafka client factories, idempotent topic creation, and reading topics to their end.

`partitions_of` asks the broker which partitions topics have (public client API only; no
`consumer._client`). `read_to_end` drains assigned partitions up to end offsets taken at the
start and raises `TimeoutError` when they are not reached in time (never a silent partial
read); `read_from_beginning` wraps it for the small compacted topics tools load whole.

Producers are idempotent with acks=all, and pace their metadata refreshes while no broker
answers (services/common/kafka_pacing.py). Consumers read committed data only, never
auto-commit, and decompress gzip, snappy, lz4 and zstd batches (cramjam) whatever client
wrote them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError, for_code

from services.common.kafka_pacing import pace_metadata_updates
from services.common.security import check_security
from services.common.settings import KafkaSettings
from services.common.topics import TopicSpec

__all__ = [
    "TopicConfigMismatch",
    "describe_topic_configs",
    "ensure_topics",
    "make_admin",
    "make_consumer",
    "make_producer",
    "partitions_of",
    "positions_reached",
    "read_from_beginning",
    "read_to_end",
    "wait_for_broker",
]

_TOPIC_EXISTS = 36


class TopicConfigMismatch(RuntimeError):
    """An existing topic differs from its declaration in a way that matters."""


def make_producer(
    kafka: KafkaSettings, *, transactional_id: str | None = None, **overrides: Any
) -> AIOKafkaProducer:
    """An idempotent producer (acks=all). Pass `transactional_id` for exactly-once output."""
    kw: dict[str, Any] = {
        **kafka.client_kwargs(),
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        "max_batch_size": 256 * 1024,
    }
    if transactional_id:
        kw["transactional_id"] = transactional_id
    kw.update(overrides)
    producer = AIOKafkaProducer(**kw)
    pace_metadata_updates(producer.client)  # no sender spin while the broker is away
    return producer


def make_consumer(
    kafka: KafkaSettings, *topics: str, group_id: str | None, **overrides: Any
) -> AIOKafkaConsumer:
    """A consumer that reads committed records from the earliest offset, committing by hand."""
    kw: dict[str, Any] = {
        **kafka.client_kwargs(),
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_committed",
        "max_poll_records": 1000,
    }
    kw.update(overrides)
    return AIOKafkaConsumer(*topics, **kw)


def make_admin(kafka: KafkaSettings) -> AIOKafkaAdminClient:
    kw = kafka.client_kwargs()
    kw.pop("client_id", None)
    return AIOKafkaAdminClient(client_id=f"{kafka.client_id}-admin", **kw)


async def wait_for_broker(kafka: KafkaSettings, timeout_s: float = 60.0) -> None:
    """Poll a metadata request until the broker answers or the deadline passes."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        client = AIOKafkaClient(**kafka.client_kwargs())
        try:
            await asyncio.wait_for(
                client.bootstrap(), timeout=max(0.5, deadline - time.monotonic())
            )
            if client.cluster.brokers():
                return
        except (TimeoutError, KafkaError, OSError) as exc:
            last = exc
            await check_security(kafka)  # refused credentials/certificate: say so now
        finally:
            await client.close()
        await asyncio.sleep(0.25)
    raise TimeoutError(
        f"Kafka at {kafka.bootstrap_servers} did not answer within {timeout_s:.0f}s "
        f"(last error: {last!r}); start it with `make kafka-up` or set "
        "ADMUSE_KAFKA_BOOTSTRAP_SERVERS"
    )


async def ensure_topics(
    kafka: KafkaSettings, specs: Iterable[TopicSpec], *, replication_factor: int = 1
) -> list[str]:
    """Create the topics that do not exist yet; return the names created.

    Idempotent: existing topics are left alone but checked — a topic with fewer partitions
    or another cleanup policy than declared raises `TopicConfigMismatch`.
    """
    specs = list(specs)
    admin = make_admin(kafka)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        created: list[str] = []
        raced: set[str] = set()
        if missing:
            resp = await admin.create_topics(
                [
                    NewTopic(s.name, s.partitions, replication_factor, topic_configs=s.configs())
                    for s in missing
                ]
            )
            for topic, code, *rest in resp.topic_errors:
                if code == 0:
                    created.append(topic)
                elif code == _TOPIC_EXISTS:  # another creator won the race: check it below
                    raced.add(topic)
                else:
                    msg = rest[0] if rest else ""
                    raise for_code(code)(f"creating topic {topic}: {msg}")
        await _check_existing(admin, [s for s in specs if s.name in existing | raced])
        return created
    finally:
        await admin.close()


async def _check_existing(admin: AIOKafkaAdminClient, specs: Sequence[TopicSpec]) -> None:
    if not specs:
        return
    names = [s.name for s in specs]
    deadline = time.monotonic() + 10
    while True:  # a topic created a moment ago may not be in every metadata cache yet
        meta = {t["topic"]: t for t in await admin.describe_topics(names)}
        if all(meta[n]["partitions"] for n in names) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    configs = await _describe(admin, [s.name for s in specs])
    for spec in specs:
        partitions = len(meta[spec.name]["partitions"])
        policy = configs[spec.name].get("cleanup.policy")
        if partitions < spec.partitions or policy != spec.cleanup_policy:
            raise TopicConfigMismatch(
                f"topic {spec.name} exists with {partitions} partitions and cleanup.policy="
                f"{policy}, declared {spec.partitions} and {spec.cleanup_policy}; fix or "
                "delete the topic"
            )


async def describe_topic_configs(
    kafka: KafkaSettings, names: Sequence[str]
) -> dict[str, dict[str, str]]:
    """Topic configs as the broker reports them: {topic: {config: value}}."""
    admin = make_admin(kafka)
    await admin.start()
    try:
        return await _describe(admin, names)
    finally:
        await admin.close()


async def _describe(admin: AIOKafkaAdminClient, names: Sequence[str]) -> dict[str, dict[str, str]]:
    responses = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, n) for n in names]
    )
    out: dict[str, dict[str, str]] = {}
    for resp in responses:
        for resource in resp.resources:
            _code, _msg, _type, name, entries = resource[:5]
            out[name] = {e[0]: e[1] for e in entries}
    return out


async def partitions_of(
    kafka: KafkaSettings, topics: Iterable[str], *, timeout_s: float = 10.0
) -> list[TopicPartition]:
    """Every partition of `topics`, sorted, from a metadata request (polled until each topic
    has partitions: a topic created a moment ago may not be in the metadata yet). Raises
    `LookupError` naming the topics that have none by the deadline."""
    names = list(dict.fromkeys(topics))
    client = AIOKafkaClient(**kafka.client_kwargs())
    await client.bootstrap()
    try:
        client.set_topics(names)
        deadline = time.monotonic() + timeout_s
        while True:
            await client.force_metadata_update()
            found = {t: client.cluster.partitions_for_topic(t) or set() for t in names}
            missing = [t for t, ps in found.items() if not ps]
            if not missing:
                return [TopicPartition(t, p) for t in names for p in sorted(found[t])]
            if time.monotonic() > deadline:
                raise LookupError(
                    f"topic(s) {missing} have no partitions on {kafka.bootstrap_servers}; "
                    "create them first (ensure_topics)"
                )
            await asyncio.sleep(0.1)
    finally:
        await client.close()


async def positions_reached(consumer: AIOKafkaConsumer, ends: Mapping[TopicPartition, int]) -> bool:
    """Whether the consumer's position is at or past `ends` on every partition."""
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return False
    return True


Handler = Callable[[ConsumerRecord[Any, Any]], Awaitable[None] | None]


async def read_to_end(
    consumer: AIOKafkaConsumer,
    ends: Mapping[TopicPartition, int],
    handle: Handler,
    *,
    timeout_s: float,
    max_records: int = 2000,
) -> int:
    """Feed every record below `ends` of the assigned partitions to `handle` (awaited when it
    returns an awaitable); return how many. Raises `TimeoutError` when the positions have not
    reached `ends` within `timeout_s`."""
    pending = {tp for tp, end in ends.items() if end > 0}
    pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}
    deadline = time.monotonic() + timeout_s
    n = 0
    while pending:
        if time.monotonic() > deadline:
            left = {f"{tp.topic}[{tp.partition}]": ends[tp] for tp in pending}
            raise TimeoutError(f"did not read {left} to its end within {timeout_s:.0f}s")
        batches = await consumer.getmany(*pending, timeout_ms=500, max_records=max_records)
        for tp, records in batches.items():
            for rec in records:
                if rec.offset >= ends[tp]:
                    break
                n += 1
                result = handle(rec)
                if result is not None:
                    await result
        pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}
    return n


async def read_from_beginning(
    kafka: KafkaSettings, topics: Iterable[str], handle: Handler, *, timeout_s: float = 30.0
) -> int:
    """Read whole topics (every partition, from the beginning up to the end offsets now)
    with a fresh group-less consumer; `handle` sees each record. Returns the count."""
    tps = await partitions_of(kafka, topics)
    consumer = make_consumer(kafka, group_id=None)
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        return await read_to_end(consumer, ends, handle, timeout_s=timeout_s)
    finally:
        await consumer.stop()
