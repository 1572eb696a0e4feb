"""Music and film through the whole loop, as a user runs them: one short `admuse demo
--scenario music|film` each, on the real services and broker. What a short run must show: the
three-policy table judged on engagement, rewards made by the domain's feedback events (fractions
heard or seen, not 0/1 clicks), a model trained on them, every generated creative admitted
passing its domain's rules, and the report playing the tracks / showing the storyboards. The
lift claims of full-length runs (two seeds per domain) are in bench/RESULTS.md."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from services.analysis.kafka_io import ReadWindow, read_latest, read_topic
from services.common.codec import SchemaRegistry
from services.common.settings import KafkaSettings
from services.common.topics import Topics
from services.domains import rules_for
from tests.e2e.demo_run import run_demo

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

BUDGET_S = 120
CAMPAIGN = {"music": "jingle", "film": "pilot"}
RENDERING = {"music": "data:audio/wav;base64,", "film": "data:image/svg+xml;base64,"}


@pytest.mark.parametrize("domain", ["music", "film"])
async def test_a_short_demo_runs_the_loop_on_the_domains_feedback(
    kafka: KafkaSettings, tmp_path: Path, domain: str
) -> None:
    run = tmp_path / "run"
    code, out = await asyncio.to_thread(
        run_demo, kafka, run, scenario=domain, budget_s=BUDGET_S, timeout_s=290
    )
    assert code == 0, f"admuse demo --scenario {domain} failed ({code}):\n{out}"

    result = json.loads((run / "result.json").read_text())
    assert result["measure"]["rate"] == "engagement"
    assert "engagement" in out and "what generation adds" in out, out
    for arm in ("control", "catalog", "optimized"):
        assert result["arms"][arm]["impressions"] > 300, f"{arm}: too little traffic\n{out}"
    assert result["events"]["events_unsent"] == 0, result["events"]
    assert result["creatives"]["models"] >= 1, f"no model trained on {domain} rewards\n{out}"

    registry = SchemaRegistry.load()
    topics = Topics.from_settings(kafka)
    cid = CAMPAIGN[domain]
    rewards, _ = await read_topic(
        kafka,
        topics.rewards.name,
        registry.codec("Reward").decode,
        ReadWindow(),
        keep=lambda r: r["campaign_id"] == cid,
    )
    values = [r["reward"] for r in rewards]
    assert len(values) > 300, f"{len(values)} rewards"
    assert all(0.0 <= v <= 1.0 for v in values)
    fractional = sum(0.0 < v < 1.0 for v in values)
    assert fractional > len(values) / 10, f"rewards look like clicks, not {domain} events"

    campaigns = await read_latest(
        kafka, topics.campaigns.name, registry.codec("Campaign").decode, _campaign_key
    )
    creatives = await read_latest(
        kafka,
        topics.creatives.name,
        registry.codec("Creative").decode,
        lambda c: c["creative_id"],
        keep=lambda c: c["campaign_id"] == cid,
    )
    rules = rules_for(campaigns[cid])
    assert rules, f"the {domain} domain declares admission rules"
    for c in creatives.values():
        if c["origin"] == "generated" and c["status"] != "blocked":
            broken = [r.name for r in rules if r.check(c["attributes"]) is not None]
            assert not broken, f"{c['creative_id']} admitted against {broken}: {c['attributes']}"

    report = (run / "report.html").read_text()
    assert RENDERING[domain] in report, f"the report shows no {domain} rendering"


def _campaign_key(record: dict[str, Any]) -> str:
    return str(record["campaign_id"])
