"""`admuse topics`: create and inspect the Kafka topics declared in services/common/topics.py."""

from __future__ import annotations

import asyncio

import typer
from rich.console import Console
from rich.table import Table


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Create and inspect admuse's Kafka topics.", no_args_is_help=True)
    group.command("create")(create)
    group.command("list")(list_)
    app.add_typer(group, name="topics")


def create() -> None:
    """Create every admuse topic that does not exist yet (idempotent)."""
    from services.common.kafka import ensure_topics, wait_for_broker
    from services.common.settings import KafkaSettings
    from services.common.topics import Topics

    kafka = KafkaSettings()

    async def run() -> list[str]:
        await wait_for_broker(kafka, 30)
        return await ensure_topics(kafka, Topics.from_settings(kafka))

    created = asyncio.run(run())
    Console().print(f"created {len(created)} topic(s): {', '.join(created) or '(all existed)'}")


def list_() -> None:
    """Show the declared topics with their partitions, cleanup policy and record type."""
    from services.common.settings import KafkaSettings
    from services.common.topics import Topics

    table = Table("topic", "partitions", "cleanup", "key", "value")
    for spec in Topics.from_settings(KafkaSettings()):
        table.add_row(
            spec.name,
            str(spec.partitions),
            spec.cleanup_policy,
            spec.key,
            spec.value or "JSON or Avro",
        )
    Console().print(table)
