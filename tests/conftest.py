"""Shared fixtures. Integration and e2e tests run against the real broker `make test` starts
(ADMUSE_KAFKA_BOOTSTRAP_SERVERS); each test gets its own topic prefix and consumer group."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest

from services.common.codec import SchemaRegistry
from services.common.settings import KafkaSettings
from services.common.topics import Topics


@pytest.fixture(scope="session")
def registry() -> SchemaRegistry:
    return SchemaRegistry.load()


@pytest.fixture(scope="session")
async def kafka_base() -> KafkaSettings:
    """Settings for the test broker; waits (by polling metadata) until it answers."""
    from services.common.kafka import wait_for_broker

    if "ADMUSE_KAFKA_BOOTSTRAP_SERVERS" not in os.environ:
        pytest.fail(
            "integration tests need the real broker: run them with `make test`, or start one "
            "with `make kafka-up` and set ADMUSE_KAFKA_BOOTSTRAP_SERVERS"
        )
    kafka = KafkaSettings()
    await wait_for_broker(kafka, 60)
    return kafka


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
async def kafka(kafka_base: KafkaSettings, unique: str) -> KafkaSettings:
    """Broker settings with a topic prefix of this test's own."""
    return kafka_base.model_copy(update={"topic_prefix": f"t{unique}."})


@pytest.fixture
async def topics(kafka: KafkaSettings) -> AsyncIterator[Topics]:
    """Every admuse topic, created fresh under this test's prefix."""
    from services.common.kafka import ensure_topics

    t = Topics.from_settings(kafka)
    await ensure_topics(kafka, t)
    yield t


@pytest.fixture
def group_id(unique: str) -> str:
    return f"g-{unique}"
