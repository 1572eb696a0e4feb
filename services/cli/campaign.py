"""`admuse campaign apply|show FILE`: validate a campaign spec and publish it.

`apply` publishes the `Campaign` record (key campaign_id) to `admuse.campaigns` with the next
revision, every seed as a live catalog `Creative` to `admuse.creatives`, and retires catalog
creatives of this campaign that an earlier apply published and the file no longer lists.
The spec format is documented in `services/common/campaign.py`, the one campaign model.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from services.common.campaign import (
    CampaignSpec,
    SpecError,
    campaign_record,
    creative_records,
    load_spec,
)
from services.domains import DomainError, check_record

__all__ = ["ApplyResult", "apply_spec", "register", "wait_for_leaders"]


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Validate and publish campaign specs.", no_args_is_help=True)
    group.command("apply")(apply)
    group.command("show")(show)
    app.add_typer(group, name="campaign")


@dataclass(frozen=True)
class ApplyResult:
    campaign_id: str
    revision: int
    creatives: list[str]
    retired: list[str]


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
        f"max generated per segment: {spec.max_generated}"
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
    )


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

    previous = await _read_compacted(kafka, topics.campaigns.name, campaign_codec)
    prior = previous.get(spec.campaign_id)
    revision = (prior["revision"] + 1) if prior else 1
    creatives = creative_records(spec, now)
    live_ids = {c["creative_id"] for c in creatives}
    existing = await _read_compacted(kafka, topics.creatives.name, creative_codec)
    stale = [
        {**c, "status": "retired", "retired_at": now}
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
            campaign_codec.encode(campaign_record(spec, revision, now)),
            key=spec.campaign_id.encode(),
        )
        for record in [*creatives, *stale]:
            await producer.send(
                topics.creatives.name,
                creative_codec.encode(record),
                key=record["creative_id"].encode(),
            )
        await producer.flush()
    finally:
        await producer.stop()
    return ApplyResult(
        spec.campaign_id, revision, sorted(live_ids), sorted(c["creative_id"] for c in stale)
    )


async def _read_compacted(kafka: Any, topic: str, codec: Any) -> dict[str, dict[str, Any]]:
    """Latest decodable value per key of a (small, compacted) topic; tombstones remove keys."""
    from services.common.codec import CodecError
    from services.common.kafka import read_from_beginning

    out: dict[str, dict[str, Any]] = {}

    def keep(rec: Any) -> None:
        key = rec.key.decode("utf-8", "replace") if rec.key else ""
        if rec.value is None:
            out.pop(key, None)
            return
        try:
            out[key] = codec.decode(rec.value)
        except CodecError:
            pass  # not ours to judge here; the owning service dead-letters it

    with _quiet_new_topic_noise():
        await read_from_beginning(kafka, [topic], keep, timeout_s=30)
    return out


async def wait_for_leaders(kafka: Any, names: list[str], timeout_s: float = 30.0) -> None:
    """Poll metadata until every partition of freshly created topics has a leader."""
    with _quiet_new_topic_noise():
        await _wait_for_leaders(kafka, names, timeout_s)


@contextlib.contextmanager
def _quiet_new_topic_noise() -> Iterator[None]:
    """aiokafka logs "not found in cluster metadata" / NotLeaderForPartition while a fresh
    topic's leader settles; it retries them itself, and a lasting failure still raises. Quiet
    those loggers for the moment it takes."""
    loggers = [logging.getLogger(n) for n in ("aiokafka.cluster", "aiokafka.consumer.fetcher")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


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
