"""`admuse train --campaign X`: train and publish one campaign's models now.

Reads the campaign, its creatives and the buffered window of rewards from Kafka (up to the
current end of each topic), trains with a progress bar, exports and verifies the ONNX models,
writes them to the model store and publishes `ModelPublished`, as the trainer service does.
"""

from __future__ import annotations

import asyncio
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table


def register(app: typer.Typer) -> None:
    app.command("train")(train)


def train(
    campaign: str = typer.Option(..., "--campaign", "-c", help="Campaign id to train."),
    seed: int | None = typer.Option(None, help="Seed (default ADMUSE_TRAINER_SEED)."),
    profile: str | None = typer.Option(
        None, help="full or small (default ADMUSE_TRAINER_PROFILE)."
    ),
    steps: int | None = typer.Option(None, help="GAN steps (default: the profile's)."),
    publish: bool = typer.Option(True, help="Write to the model store and admuse.models."),
    timeout: float = typer.Option(60.0, help="Seconds to wait for the broker."),
) -> None:
    """Train a campaign's generator and reward model from its rewards and publish them."""
    from services.trainer import Settings

    overrides: dict[str, Any] = {}
    if profile is not None:
        overrides["profile"] = profile
    if steps is not None:
        overrides["gan_steps"] = steps
    settings = Settings(**overrides)
    console = Console()
    if publish:
        try:
            settings.signer()  # fail before training, not after
        except ValueError as exc:
            console.print(f"[red]not published:[/red] {exc}")
            raise typer.Exit(1) from None
    try:
        record = asyncio.run(_run(settings, campaign, seed, publish, timeout, console))
    except (LookupError, ValueError, RuntimeError) as exc:
        console.print(f"[red]not published:[/red] {exc}")
        raise typer.Exit(1) from None
    table = Table("metric", "value", title=f"{campaign} {record['version']}")
    for key, value in sorted(record["metrics"].items()):
        table.add_row(key, f"{value:.4g}")
    console.print(table)
    for art in record["artifacts"]:
        console.print(f"{art['name']:<13} {art['uri']}  sha256={art['sha256'][:16]}…")


async def _run(
    settings: Any,
    campaign_id: str,
    seed: int | None,
    publish: bool,
    broker_wait_s: float,
    console: Console,
) -> dict[str, Any]:
    from services.common.codec import SchemaRegistry
    from services.common.kafka import make_producer, wait_for_broker
    from services.common.model_store import ModelStore
    from services.common.topics import Topics
    from services.trainer import TrainerState, TrainingBuffer

    registry = SchemaRegistry.load()
    topics = Topics.from_settings(settings.kafka)
    await wait_for_broker(settings.kafka, broker_wait_s)
    state = TrainerState(
        settings,
        registry,
        topics,
        TrainingBuffer(settings.buffer_max_rows, settings.buffer_max_age_ms),
    )
    with console.status("reading campaigns, creatives and rewards from Kafka"):
        await _read_all(settings, state)
    if campaign_id not in state.campaigns:
        raise LookupError(
            f"campaign {campaign_id!r} is not on {topics.campaigns.name}; "
            f"known: {sorted(state.campaigns) or 'none'}"
        )
    rows = state.buffer.rows(campaign_id)
    console.print(
        f"{campaign_id}: {len(rows)} rewards, {sum(r.reward > 0 for r in rows)} "
        f"rewarded, {len(state.creatives)} creatives"
    )
    from services.trainer import pick_device, store_model, train_campaign

    device = pick_device(settings.device)
    console.print(f"device: {device}")
    columns = (
        TextColumn("{task.description:<13}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as bar:
        tasks: dict[str, Any] = {}

        def progress(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total)
            bar.update(tasks[phase], completed=done)

        built = await asyncio.to_thread(
            train_campaign,
            settings,
            state.campaigns[campaign_id],
            state.creatives,
            rows,
            seed=seed,
            device=device,
            progress=progress,
        )
    quality = built.quality
    if not publish:
        if not quality["passed"]:
            reasons = "; ".join(quality["reasons"])
            console.print(f"[yellow]fails the quality gate:[/yellow] {reasons}")
        return {"version": built.version, "metrics": built.metrics, "artifacts": []}
    record = store_model(ModelStore(settings.model_store_url), built, settings.signer())
    producer = make_producer(settings.kafka)
    await producer.start()
    try:
        await producer.send_and_wait(
            topics.models.name,
            registry.codec("ModelPublished").encode(record),
            key=campaign_id.encode(),
        )
    finally:
        await producer.stop()
    return record


async def _read_all(settings: Any, state: Any) -> None:
    """Consume campaigns, creatives and rewards from the beginning up to their end now."""
    from services.common.kafka import read_from_beginning

    topics = state.topics
    names = [topics.campaigns.name, topics.creatives.name, topics.rewards.name]
    await read_from_beginning(settings.kafka, names, state.apply, timeout_s=600)
