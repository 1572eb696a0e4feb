"""`admuse tail TOPIC`: print a topic's records as JSON lines, Avro decoded, following new ones.

One line per record: topic, partition, offset, timestamp (ISO, UTC), key, headers and the
value — Avro single objects decoded with the writer's schema from schemas/ (any record, any
version), JSON values as JSON, anything else as base64 with `"value_format": "bytes"`. A value
that claims to be Avro and does not decode is printed with its `error`, never skipped.
Reads committed records only, in no consumer group (it moves no one's offsets).
"""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import sys
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

__all__ = ["record_line", "register"]


def register(app: typer.Typer) -> None:
    app.command("tail")(tail)


def tail(
    topic: Annotated[
        str, typer.Argument(help="Topic: its full name or short one (events, decisions, ...).")
    ],
    from_beginning: Annotated[
        bool, typer.Option("--from-beginning", help="Start at the oldest record.")
    ] = False,
    last: Annotated[
        int,
        typer.Option(
            min=0, help="Without --from-beginning: start this many records back per partition."
        ),
    ] = 10,
    follow: Annotated[
        bool, typer.Option("--follow/--no-follow", help="Keep printing new records until Ctrl-C.")
    ] = True,
    max_records: Annotated[
        int | None, typer.Option("--max", min=1, help="Stop after this many records.")
    ] = None,
) -> None:
    """Print a topic's records as JSON lines (Avro decoded); follows new records by default."""
    import structlog

    # stdout carries only records: log lines (e.g. a legacy fingerprint read) go to stderr
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))
    from services.common.codec import SchemaRegistry
    from services.common.settings import KafkaSettings
    from services.common.topics import Topics

    kafka = KafkaSettings()
    topics = Topics.from_settings(kafka)
    names = {s.name: s.name for s in topics}
    names |= {
        s.name.removeprefix(kafka.topic_prefix).removeprefix("admuse."): s.name for s in topics
    }
    names |= {f: getattr(topics, f).name for f in topics.__dataclass_fields__}
    if topic not in names:
        raise typer.BadParameter(f"unknown topic {topic!r}; one of {sorted(set(names.values()))}")
    registry = SchemaRegistry.load()
    printed = asyncio.run(
        _tail(kafka, names[topic], registry, from_beginning, last, follow, max_records)
    )
    if printed == 0 and not follow:
        print(f"admuse tail: no records in {names[topic]}", file=sys.stderr)


async def _tail(
    kafka: Any,
    name: str,
    registry: Any,
    from_beginning: bool,
    last: int,
    follow: bool,
    max_records: int | None,
) -> int:
    from services.common.kafka import make_consumer, partitions_of, wait_for_broker

    await wait_for_broker(kafka, 30)
    try:
        tps = await partitions_of(kafka, [name], timeout_s=0)
    except LookupError:
        print(
            f"admuse tail: topic {name} does not exist on {kafka.bootstrap_servers} "
            "(`admuse topics create` makes them)",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    consumer = make_consumer(kafka, group_id=None)
    await consumer.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    printed = 0
    try:
        consumer.assign(tps)
        starts = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, starts[tp] if from_beginning else max(starts[tp], ends[tp] - last))
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for rec in records:
                    print(json.dumps(record_line(rec, registry), ensure_ascii=False), flush=True)
                    printed += 1
                    if max_records is not None and printed >= max_records:
                        return printed
            if not follow and all([await consumer.position(tp) >= ends[tp] for tp in tps]):
                break
    finally:
        await consumer.stop()
    return printed


def record_line(rec: Any, registry: Any) -> dict[str, Any]:
    """One consumed record as a JSON-ready dict (value decoded as far as it goes)."""
    line: dict[str, Any] = {
        "topic": rec.topic,
        "partition": rec.partition,
        "offset": rec.offset,
        "timestamp": datetime.fromtimestamp(rec.timestamp / 1000, UTC).isoformat(),
        "key": _text(rec.key),
        "headers": {k: _text(v) for k, v in (rec.headers or ())},
    }
    line.update(_value(rec.value, registry))
    return line


def _value(data: bytes | None, registry: Any) -> dict[str, Any]:
    from services.common.codec import MAGIC, CodecError

    if data is None:
        return {"value": None, "value_format": "null"}
    if data[:2] == MAGIC:
        try:
            writer = registry.by_fingerprint(bytes(data[2:10]))
            value = registry.codec(writer.name, writer.version).decode(data)
        except CodecError as exc:
            return {"value": base64.b64encode(data).decode(), "value_format": "bytes",
                    "error": str(exc)}  # fmt: skip
        return {"value": _jsonable(value), "value_format": f"avro:{writer.name}.v{writer.version}"}
    try:
        return {"value": json.loads(data), "value_format": "json"}
    except (UnicodeDecodeError, ValueError):
        return {"value": base64.b64encode(data).decode(), "value_format": "bytes"}


def _text(data: bytes | None) -> str | None:
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(data).decode()


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return "base64:" + base64.b64encode(value).decode()
    return value
