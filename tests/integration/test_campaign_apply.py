"""`admuse campaign apply` against the real broker: records on the compacted topics."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from services.cli.campaign import apply_spec
from services.common.campaign import parse_spec
from services.common.codec import SchemaRegistry
from services.common.kafka import read_from_beginning
from services.common.settings import KafkaSettings
from services.common.topics import Topics

pytestmark = pytest.mark.integration

# The spec this test applies; every expectation below is read off it.
SPEC: dict[str, Any] = {
    "campaign_id": "spring",
    "name": "Spring sale",
    "attributes": [
        {"name": "headline", "kind": "categorical", "values": ["Save 20%", "New in"]},
        {"name": "font_scale", "kind": "numeric", "min": 0.8, "max": 1.6},
        {"name": "background", "kind": "color"},
    ],
    "segment_keys": ["country", "device"],
    "reward": {"kind": "weighted", "weights": {"click": 1.0, "conversion": 5.0}},
    "attribution_window": 30,
    "holdout_share": 0.2,
    "seeds": [
        {
            "name": "Classic",
            "attributes": {"headline": "Save 20%", "font_scale": 1.0, "background": "#FFFFFF"},
        },
        {
            "name": "Soft",
            "id": "soft-1",
            "attributes": {"headline": "New in", "font_scale": 1.2, "background": "#112233"},
        },
    ],
}


async def _latest(kafka: KafkaSettings, topic: str, codec: Any) -> dict[str, dict[str, Any]]:
    """What a reader of the compacted topic sees: the last record per key."""
    out: dict[str, dict[str, Any]] = {}

    def keep(rec: Any) -> None:
        out[rec.key.decode()] = codec.decode(rec.value)

    await read_from_beginning(kafka, [topic], keep)
    return out


async def test_apply_publishes_campaign_and_seeds_and_retires_dropped_seeds(
    kafka: KafkaSettings, topics: Topics, registry: SchemaRegistry
) -> None:
    campaign_codec, creative_codec = registry.codec("Campaign"), registry.codec("Creative")
    first = await apply_spec(kafka, parse_spec(SPEC))
    # ids: `id` when given, else <campaign_id>-<slug of name>
    assert first.revision == 1 and first.creatives == ["soft-1", "spring-classic"]

    campaign = (await _latest(kafka, topics.campaigns.name, campaign_codec))["spring"]
    assert campaign["revision"] == 1
    assert campaign["name"] == SPEC["name"]
    assert campaign["segment_keys"] == SPEC["segment_keys"]
    assert [(a["name"], a["kind"]) for a in campaign["attributes"]] == [
        (a["name"], a["kind"]) for a in SPEC["attributes"]
    ]
    assert campaign["attributes"][0]["values"] == ["Save 20%", "New in"]
    assert (campaign["attributes"][1]["min"], campaign["attributes"][1]["max"]) == (0.8, 1.6)
    reward = campaign["reward"]
    assert (reward["kind"], reward["click_weight"], reward["conversion_weight"]) == (
        "weighted",
        1.0,
        5.0,
    )
    assert campaign["attribution_window_ms"] == 30_000
    assert campaign["holdout_share"] == 0.2
    creatives = await _latest(kafka, topics.creatives.name, creative_codec)
    assert {k: (v["status"], v["origin"], v["name"]) for k, v in creatives.items()} == {
        "spring-classic": ("live", "catalog", "Classic"),
        "soft-1": ("live", "catalog", "Soft"),
    }
    assert creatives["spring-classic"]["attributes"] == {
        "headline": "Save 20%",
        "font_scale": 1.0,
        "background": "#ffffff",  # colors are published in lower case
    }

    fewer = copy.deepcopy(SPEC)
    fewer["seeds"] = fewer["seeds"][:1]
    second = await apply_spec(kafka, parse_spec(fewer))
    assert second.revision == 2 and second.retired == ["soft-1"]
    creatives = await _latest(kafka, topics.creatives.name, creative_codec)
    assert creatives["soft-1"]["status"] == "retired"
    assert creatives["soft-1"]["retired_at"] is not None
    assert creatives["spring-classic"]["status"] == "live"
    campaigns = await _latest(kafka, topics.campaigns.name, campaign_codec)
    assert campaigns["spring"]["revision"] == 2


async def test_demo_warm_up_settles_the_coordinators(kafka: KafkaSettings, topics: Topics) -> None:
    from services.cli.stack import warm_up_coordinators

    await warm_up_coordinators(kafka, timeout_s=30)  # commits an offset, runs a transaction
