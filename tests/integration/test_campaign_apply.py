"""`admuse campaign apply` against the real broker: records on the compacted topics."""

from __future__ import annotations

import copy

import pytest

from services.cli.campaign import apply_spec
from services.cli.campaign_spec import parse_spec
from services.common.codec import SchemaRegistry
from services.common.compacted import read_compacted
from services.common.settings import KafkaSettings
from services.common.topics import Topics
from tests.unit.simulator.test_campaign_spec import SPEC

pytestmark = pytest.mark.integration


async def test_apply_publishes_campaign_and_seeds_and_retires_dropped_seeds(
    kafka: KafkaSettings, topics: Topics, registry: SchemaRegistry
) -> None:
    first = await apply_spec(kafka, parse_spec(SPEC))
    assert first.revision == 1 and first.creatives == ["soft-1", "spring-classic"]

    campaigns = await read_compacted(kafka, topics.campaigns.name, registry.codec("Campaign"))
    assert campaigns["spring"]["revision"] == 1
    assert campaigns["spring"]["segment_keys"] == ["country", "device"]
    creatives = await read_compacted(kafka, topics.creatives.name, registry.codec("Creative"))
    assert {k: v["status"] for k, v in creatives.items()} == {
        "spring-classic": "live",
        "soft-1": "live",
    }

    fewer = copy.deepcopy(SPEC)
    fewer["seeds"] = fewer["seeds"][:1]
    second = await apply_spec(kafka, parse_spec(fewer))
    assert second.revision == 2 and second.retired == ["soft-1"]
    creatives = await read_compacted(kafka, topics.creatives.name, registry.codec("Creative"))
    assert creatives["soft-1"]["status"] == "retired"
    assert creatives["soft-1"]["retired_at"] is not None
    assert creatives["spring-classic"]["status"] == "live"
    campaigns = await read_compacted(kafka, topics.campaigns.name, registry.codec("Campaign"))
    assert campaigns["spring"]["revision"] == 2


async def test_demo_warm_up_settles_the_coordinators(kafka: KafkaSettings, topics: Topics) -> None:
    from services.cli.stack import warm_up_coordinators

    await warm_up_coordinators(kafka, timeout_s=30)  # commits an offset, runs a transaction
