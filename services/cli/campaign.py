"""`admuse campaign apply|show FILE`: validate a campaign spec and publish it;
`admuse campaign list` and `pause|resume|stop ID`: the lifecycle (services/common/lifecycle.py).

`apply` publishes the `Campaign` record (key campaign_id) to `admuse.campaigns` with the next
revision, every seed as a live catalog `Creative` to `admuse.creatives`, and retires catalog
creatives of this campaign that an earlier apply published and the file no longer lists.
The spec format is documented in `services/common/campaign.py`, the one campaign model.
Apply keeps the campaign's lifecycle state: a paused campaign stays paused when its spec
changes.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from services.common.campaign import (
    CampaignSpec,
    SpecError,
    campaign_record,
    creative_records,
    load_spec,
)
from services.common.compacted import quiet_new_topic_noise, read_compacted
from services.common.review import is_blocked
from services.domains import DomainError, check_record

__all__ = ["ApplyResult", "apply_spec", "register", "wait_for_leaders"]


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Validate and publish campaign specs.", no_args_is_help=True)
    group.command("apply")(apply)
    group.command("show")(show)
    group.command("list")(list_campaigns)
    group.command("pause")(pause)
    group.command("resume")(resume)
    group.command("stop")(stop)
    app.add_typer(group, name="campaign")


@dataclass(frozen=True)
class ApplyResult:
    campaign_id: str
    revision: int
    creatives: list[str]
    retired: list[str]
    blocked: list[str] = field(default_factory=list)  # seeds a person blocked: not published
    state: str = "active"  # the lifecycle state, kept across applies


def _load_or_exit(file: Path) -> CampaignSpec:
    try:
        spec = load_spec(file)
        check_record(campaign_record(spec, revision=0))
        return spec
    except (SpecError, DomainError) as exc:
        Console(stderr=True).print(f"[red]invalid campaign spec[/red]\n{exc}", highlight=False)
        raise typer.Exit(2) from None


def _scenario_campaign(name: str) -> CampaignSpec:
    from services.simulator import load_scenario

    try:
        spec = load_scenario(name).campaign
        check_record(campaign_record(spec, revision=0))
        return spec
    except (SpecError, DomainError) as exc:
        Console(stderr=True).print(f"[red]invalid scenario[/red]\n{exc}", highlight=False)
        raise typer.Exit(2) from None


def show(file: Annotated[Path, typer.Argument(help="Campaign spec, YAML or JSON.")]) -> None:
    """Validate a campaign spec and print what `apply` would publish."""
    spec = _load_or_exit(file)
    console = Console()
    console.print(f"[bold]{spec.campaign_id}[/bold] — {spec.name} ({spec.domain} domain)")
    console.print(
        f"segment keys: {', '.join(spec.segment_keys) or '(none: one segment)'}; "
        f"reward: {spec.reward.kind}; attribution window: {spec.attribution_window:g}s; "
        f"holdout: {spec.holdout_share:.0%}; min contrast: {spec.min_contrast:g}; "
        f"max generated per segment: {spec.max_generated}; approval: {spec.approval}; "
        f"fallback: {spec.fallback or '(none)'}"
    )
    attrs = Table("attribute", "kind", "domain", title="creative space")
    for a in spec.attributes:
        domain = {
            "categorical": lambda a: ", ".join(a.values),
            "numeric": lambda a: f"[{a.min:g}, {a.max:g}]",
            "color": lambda a: "#rrggbb",
            "circular": lambda a: (
                f"[{a.min:g}, {a.max:g}) round" + (f", step {a.step:g}" if a.step else "")
            ),
            "sequence": lambda a: (
                f"{a.length} steps of "
                + " : ".join(f"{f.name} ({len(f.values)})" for f in a.fields)
            ),
        }[a.kind](a)
        attrs.add_row(a.name, a.kind, domain)
    console.print(attrs)
    seeds = Table("creative_id", "name", *[a.name for a in spec.attributes], title="seed creatives")
    for s in spec.seeds:
        seeds.add_row(
            spec.seed_id(s), s.name, *[str(s.attributes[a.name]) for a in spec.attributes]
        )
    console.print(seeds)
    for combo in spec.forbidden:
        console.print(f"forbidden: {combo}")


def apply(
    file: Annotated[
        Path | None, typer.Argument(help="Campaign spec, YAML or JSON.", show_default=False)
    ] = None,
    scenario: Annotated[
        str | None,
        typer.Option(help="Instead of a file: the campaign of a simulator scenario (name/path)."),
    ] = None,
) -> None:
    """Validate a campaign spec and publish it (campaign + seed creatives) to Kafka."""
    from services.common.settings import KafkaSettings

    if (file is None) == (scenario is None):
        Console(stderr=True).print("[red]give a campaign spec FILE or --scenario, not both[/red]")
        raise typer.Exit(2)
    spec = _load_or_exit(file) if file is not None else _scenario_campaign(str(scenario))
    result = asyncio.run(apply_spec(KafkaSettings(), spec))
    Console().print(
        f"applied campaign [bold]{result.campaign_id}[/bold] revision {result.revision}: "
        f"{len(result.creatives)} catalog creative(s) live"
        + (f", retired {', '.join(result.retired)}" if result.retired else "")
        + (f"; blocked, so not published: {', '.join(result.blocked)}" if result.blocked else "")
        + (f"; the campaign stays {result.state}" if result.state != "active" else "")
    )


_CampaignId = Annotated[str, typer.Argument(help="The campaign's id.")]
_By = Annotated[
    str | None, typer.Option("--by", help="Who acts (state_changed_by); default: $USER.")
]


def pause(campaign_id: _CampaignId, by: _By = None) -> None:
    """Pause a campaign: Decide answers its fallback creative (or none), status 'paused'."""
    _change(campaign_id, "pause", by)


def resume(campaign_id: _CampaignId, by: _By = None) -> None:
    """Resume a paused campaign: Decide runs the experiment again."""
    _change(campaign_id, "resume", by)


def stop(campaign_id: _CampaignId, by: _By = None) -> None:
    """Stop a campaign for good (like pause, with status 'stopped'; it cannot resume)."""
    _change(campaign_id, "stop", by)


def _change(campaign_id: str, action: str, by: str | None) -> None:
    from services.common.campaign_ops import change_campaign_state, operator
    from services.common.lifecycle import LifecycleError
    from services.common.settings import KafkaSettings

    try:
        change = asyncio.run(
            change_campaign_state(KafkaSettings(), campaign_id, action, by=by or operator())
        )
    except LifecycleError as exc:
        Console(stderr=True).print(f"[red]{action} refused[/red]: {exc}", highlight=False)
        raise typer.Exit(3 if exc.reason == "unknown_campaign" else 2) from None
    if change.changed:
        Console().print(
            f"campaign [bold]{campaign_id}[/bold]: {change.before} → {change.after} "
            f"(revision {change.revision})"
        )
    else:
        Console().print(f"campaign [bold]{campaign_id}[/bold] is already {change.after}")


def list_campaigns() -> None:
    """List the campaigns on Kafka with their state, approval mode and fallback."""
    from services.common.campaign_ops import read_campaigns
    from services.common.settings import KafkaSettings

    campaigns = asyncio.run(read_campaigns(KafkaSettings()))
    table = Table("campaign_id", "name", "state", "approval", "fallback", "revision")
    for cid, c in sorted(campaigns.items()):
        cells = (cid, c["name"], c["state"], c["approval"], c["fallback_creative_id"] or "-")
        table.add_row(*map(escape, cells), str(c["revision"]))
    Console().print(table)


async def apply_spec(kafka: Any, spec: CampaignSpec, *, now: datetime | None = None) -> ApplyResult:
    """Publish `spec`: ensure topics, read the current state, write campaign and creatives."""
    from services.common.codec import SchemaRegistry
    from services.common.kafka import ensure_topics, make_producer, wait_for_broker
    from services.common.topics import Topics

    now = now or datetime.now(UTC)
    topics = Topics.from_settings(kafka)
    registry = SchemaRegistry.load()
    campaign_codec, creative_codec = registry.codec("Campaign"), registry.codec("Creative")
    await wait_for_broker(kafka, 30)
    created = await ensure_topics(kafka, topics)
    if created:
        await wait_for_leaders(kafka, created)

    previous = await read_compacted(kafka, topics.campaigns.name, campaign_codec)
    prior = previous.get(spec.campaign_id)
    revision = (prior["revision"] + 1) if prior else 1
    record = campaign_record(spec, revision, now)
    if prior:  # the lifecycle is not the spec's to change
        keep = ("state", "state_changed_at", "state_changed_by")
        record.update({k: prior[k] for k in keep})
    existing = await read_compacted(kafka, topics.creatives.name, creative_codec)
    # A person's review outlives the spec: a blocked seed stays blocked, a pin stays pinned.
    seeds = creative_records(spec, now)
    blocked = sorted(c["creative_id"] for c in seeds if is_blocked(existing.get(c["creative_id"])))
    creatives = [
        {**c, **{k: existing[cid].get(k) for k in ("pinned", "reviewed_by") if cid in existing}}
        for c in seeds
        if (cid := c["creative_id"]) not in blocked
    ]
    live_ids = {c["creative_id"] for c in creatives}
    stale = [
        {**c, "status": "retired", "retired_at": now, "pinned": None}
        for c in existing.values()
        if c["campaign_id"] == spec.campaign_id
        and c["origin"] == "catalog"
        and c["status"] == "live"
        and c["creative_id"] not in live_ids
    ]

    producer = make_producer(kafka)
    await producer.start()
    try:
        await producer.send(
            topics.campaigns.name,
            campaign_codec.encode(record),
            key=spec.campaign_id.encode(),
        )
        for creative in [*creatives, *stale]:
            await producer.send(
                topics.creatives.name,
                creative_codec.encode(creative),
                key=creative["creative_id"].encode(),
            )
        await producer.flush()
    finally:
        await producer.stop()
    return ApplyResult(
        spec.campaign_id,
        revision,
        sorted(live_ids),
        sorted(c["creative_id"] for c in stale),
        blocked,
        record["state"],
    )


async def wait_for_leaders(kafka: Any, names: list[str], timeout_s: float = 30.0) -> None:
    """Poll metadata until every partition of freshly created topics has a leader."""
    with quiet_new_topic_noise():
        await _wait_for_leaders(kafka, names, timeout_s)


async def _wait_for_leaders(kafka: Any, names: list[str], timeout_s: float) -> None:
    from aiokafka import TopicPartition
    from aiokafka.client import AIOKafkaClient

    client = AIOKafkaClient(**kafka.client_kwargs())
    await client.bootstrap()
    try:
        client.set_topics(names)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            await client.force_metadata_update()
            cluster = client.cluster
            parts = {t: cluster.partitions_for_topic(t) for t in names}
            if all(parts.values()) and all(
                cluster.leader_for_partition(TopicPartition(t, p)) not in (None, -1)
                for t, ps in parts.items()
                for p in ps or ()
            ):
                return
            await asyncio.sleep(0.2)
    finally:
        await client.close()
