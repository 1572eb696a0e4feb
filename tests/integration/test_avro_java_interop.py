"""Our Avro single objects against the reference implementation: Apache Avro for Java
(BinaryMessageEncoder / BinaryMessageDecoder) and the Apache Kafka Java producer.

The Java side is tests/interop/avro-java, built with Maven against org.apache.avro:avro and
org.apache.kafka:kafka-clients from Maven Central (cached after the first build).
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY as METRICS

from services.common.codec import SchemaRegistry, default_schemas_dir
from services.common.settings import KafkaSettings
from services.common.topics import Topics
from tests.integration.ingestion_harness import IngestionProcess, TopicReader
from tests.interop import java
from tests.unit.common.avro_examples import example

pytestmark = pytest.mark.integration

REGISTRY = SchemaRegistry.load()
SCHEMAS = str(default_schemas_dir())


@pytest.fixture(scope="module")
def avro_java() -> list[str]:
    return java.build("avro-java", "io.admuse.interop.AvroInterop")


def _plain(value: Any) -> Any:
    """Our decoded value as Java's GenericData renders it: timestamps as epoch millis."""
    if isinstance(value, datetime):
        return round(value.timestamp() * 1000)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _legacy_reads() -> float:
    total = 0.0
    for record in REGISTRY.names():
        labels = {"record": record}
        total += METRICS.get_sample_value("admuse_codec_legacy_fingerprint_total", labels) or 0
    return total


def _values(name: str) -> list[dict[str, Any]]:
    schema = REGISTRY.get(name).schema
    now = int(time.time() * 1000)
    if name == "AdEvent":
        real = {
            "event_id": "e-42",
            "type": "conversion",
            "occurred_at": now,
            "campaign_id": "spring",
            "creative_id": None,
            "decision_id": "d-42",
            "user_id": "9f" * 32,
            "consent": {"personalization": True, "ads": False},
            "context": {},
            "value": 19.99,
            "sentiment": None,
            "source": None,
            "ingested_at": now + 5,
        }
        return [example(schema), real]
    return [example(schema)]


@pytest.mark.parametrize("name", ["AdEvent", "Decision", "Campaign", "Creative"])
def test_java_decodes_what_our_codec_writes(
    avro_java: list[str], name: str, tmp_path: Path
) -> None:
    codec = REGISTRY.codec(name)
    values = _values(name)
    files = []
    for i, value in enumerate(values):
        path = tmp_path / f"{name}-{i}.bin"
        path.write_bytes(codec.encode(value))
        files.append(str(path))
    lines = java.run(avro_java, "decode", SCHEMAS, name, *files).splitlines()
    assert [json.loads(line) for line in lines] == [
        _plain(codec.decode(Path(f).read_bytes())) for f in files
    ]
    # The bytes admuse wrote before the fix: Java refuses them, as the issue reported.
    data = Path(files[0]).read_bytes()
    legacy = tmp_path / "legacy.bin"
    legacy.write_bytes(data[:2] + data[2:10][::-1] + data[10:])
    with pytest.raises(AssertionError, match="MissingSchemaException"):
        java.run(avro_java, "decode", SCHEMAS, name, str(legacy))


async def test_java_producer_adevents_pass_ingestion(
    avro_java: list[str], kafka: KafkaSettings, topics: Topics, tmp_path: Path
) -> None:
    events_codec = REGISTRY.codec("AdEvent")
    svc = IngestionProcess(kafka, tmp_path / "ingestion.log")
    svc.start()
    try:
        await svc.wait_ready()
        out = java.run(
            avro_java, "produce", SCHEMAS, kafka.bootstrap_servers, topics.events_raw.name,
            "20", "java-",
        )  # fmt: skip
        sent = {e["event_id"]: e for e in map(json.loads, out.splitlines())}
        assert len(sent) == 20
        legacy_before = _legacy_reads()
        async with (
            TopicReader(kafka, topics.events_raw.name) as raw,
            TopicReader(kafka, topics.events.name) as events,
            TopicReader(kafka, topics.events_dlq.name) as dlq,
        ):
            await raw.until(lambda r: len(r) >= 20, 30, "20 Java records in events.raw")
            await events.until(lambda r: len(r) >= 20, 60, "20 Java events in admuse.events")
            await dlq.poll()
    finally:
        assert svc.stop() == 0, svc.log_tail()
    assert dlq.records == [], [r.value[:200] for r in dlq.records]
    # Java's header is byte for byte ours, and our codec reads Java's bytes in spec order.
    headers = {rec.value[:10] for rec in raw.records}
    newest = max(v.version for v in REGISTRY.versions("AdEvent"))  # Java: oldest and newest
    assert headers == {REGISTRY.get("AdEvent", v).header for v in (1, newest)}
    for rec in raw.records:
        ev = events_codec.decode(rec.value)
        assert _plain(ev) == {**sent[ev["event_id"]], "ingested_at": None}
    assert _legacy_reads() == legacy_before
    forwarded = {events_codec.decode(r.value)["event_id"]: r for r in events.records}
    assert set(forwarded) == set(sent)
    for rec in forwarded.values():
        ev = events_codec.decode(rec.value)
        assert ev["ingested_at"] is not None and ev["source"].startswith("java-AdEvent")
        assert ev["user_id"] != sent[ev["event_id"]]["user_id"]  # pseudonymized
        assert dict(rec.headers) == {"trace-id": f"trace-{ev['event_id']}".encode()}


@pytest.mark.parametrize(("name", "old"), [("Campaign", 3), ("Creative", 2)])
def test_java_reads_older_versions_into_the_newest_with_the_defaults(
    avro_java: list[str], name: str, old: int, tmp_path: Path
) -> None:
    """Records written before the lifecycle/approval fields (still on the compacted topics)
    resolve in Java, as in our codec, to the newest version with its defaults."""
    value = example(REGISTRY.get(name, old).schema)
    path = tmp_path / f"{name}-v{old}.bin"
    path.write_bytes(REGISTRY.codec(name, old).encode(value))
    [line] = java.run(avro_java, "decode", SCHEMAS, name, str(path)).splitlines()
    ours = _plain(REGISTRY.codec(name).decode(path.read_bytes()))
    assert json.loads(line) == ours
    if name == "Campaign":
        assert ours["state"] == "active" and ours["approval"] == "auto"
