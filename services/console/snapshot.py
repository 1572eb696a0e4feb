"""What the pages show, read from the topics in one pass: campaigns, creatives, models, and
per campaign the experiment report (the very function `admuse report` uses, on the very
records it reads) with its CTR-over-time series.

Reads are the analysis library's snapshot reads (no consumer group, no commit, up to the end
offsets seen at the start), so a page never moves a service's offsets.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.analysis import (
    CampaignReport,
    GroupEffect,
    LoggedData,
    ReadWindow,
    group_attribute_effects,
    load_campaign,
    read_latest,
    read_topic,
    report_from_logs,
)
from services.common.codec import SchemaRegistry
from services.common.settings import KafkaSettings
from services.common.topics import Topics
from services.console.experiment import Series, ctr_series, regret_by_arm

__all__ = ["CampaignView", "Snapshot", "read_snapshot"]


@dataclass(frozen=True)
class CampaignView:
    """One campaign's experiment: the report, its series, and regret where known."""

    report: CampaignReport
    series: Series
    pending: int | None
    regret: dict[str, dict[str, float]] = field(default_factory=dict)
    segment_effects: dict[str, dict[str, list[GroupEffect]]] = field(default_factory=dict)


@dataclass(frozen=True)
class Snapshot:
    read_at_ms: int
    campaigns: dict[str, dict[str, Any]]
    creatives: dict[str, dict[str, Any]]
    models: list[dict[str, Any]]  # every admuse.models record still on the topic, in order
    views: dict[str, CampaignView]
    read_s: float

    def digest(self) -> str:
        """Changes whenever anything a page shows changes (pages re-render on a change)."""
        parts = [
            json.dumps(self.campaigns, default=str, sort_keys=True),
            json.dumps(self.creatives, default=str, sort_keys=True),
            json.dumps([(m["campaign_id"], m["version"]) for m in self.models]),
            json.dumps(
                {
                    c: [(a.arm, a.impressions, a.outcomes, a.pending) for a in v.report.arms]
                    for c, v in self.views.items()
                }
            ),
        ]
        return str(hash("|".join(parts)))

    def serving(self) -> dict[str, str]:
        """{campaign_id: version} of the newest admuse.models record per campaign."""
        return {m["campaign_id"]: m["version"] for m in self.models}


async def read_snapshot(
    kafka: KafkaSettings, registry: SchemaRegistry, run_dir: Path | None = None
) -> Snapshot:
    started = time.monotonic()
    topics = Topics.from_settings(kafka)
    campaigns = await read_latest(
        kafka, topics.campaigns.name, registry.codec("Campaign").decode, lambda r: r["campaign_id"]
    )
    creatives = await read_latest(
        kafka, topics.creatives.name, registry.codec("Creative").decode, lambda r: r["creative_id"]
    )
    models, _ = await read_topic(
        kafka, topics.models.name, registry.codec("ModelPublished").decode, ReadWindow()
    )
    results = _simulator_results(run_dir)
    views = {}
    for cid in sorted(campaigns):
        logs = await load_campaign(
            kafka, registry, cid, decisions=ReadWindow(), rewards=ReadWindow()
        )
        report = report_from_logs(cid, logs)
        views[cid] = CampaignView(
            report,
            ctr_series(logs.rewards),
            logs.pending,
            regret_by_arm([r for r in results if r.get("campaign_id", cid) == cid]),
            _segment_effects(logs.rewards, logs.attributes),
        )
    return Snapshot(
        int(time.time() * 1000),
        campaigns,
        creatives,
        models,
        views,
        time.monotonic() - started,
    )


def _segment_effects(
    rewards: LoggedData, attributes: dict[str, dict[str, Any]]
) -> dict[str, dict[str, list[GroupEffect]]]:
    """Attribute effects within each segment (the report's function on the segment's shown
    rows): which values work for whom."""
    if "shown" in rewards.extra:
        rewards = rewards.select(rewards.extra["shown"].astype(bool))
    return {
        seg: group_attribute_effects(rewards.select(rewards.context == code), attributes)
        for code, seg in enumerate(rewards.contexts)
    }


def _simulator_results(run_dir: Path | None) -> list[dict[str, Any]]:
    """The simulator's scored requests (`<run>/results.jsonl`): its ground truth, for regret."""
    if run_dir is None:
        return []
    path = run_dir / "results.jsonl"
    rows = []
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return []
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # the line being written right now
        if isinstance(row, dict) and "oracle_reward" in row and "arm" in row:
            rows.append(row)
    return rows
