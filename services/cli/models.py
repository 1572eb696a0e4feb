"""`admuse models list|pin|rollback <campaign>`: which model versions exist and which serves.

The operations (and what pin and rollback mean) are `services.common.model_ops`, shared with
the console; this module prints them.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

__all__ = ["register"]

models_app = typer.Typer(help="Model versions: list, pin, roll back.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")


def _settings_and_store() -> tuple[Any, Any]:
    from services.common.model_store import ModelStore
    from services.common.settings import ServiceSettings

    settings = ServiceSettings()
    return settings, ModelStore(settings.model_store_url)


@models_app.command("list")
def list_models(campaign: str = typer.Argument(..., help="Campaign id.")) -> None:
    """Stored versions of a campaign, the quality verdict of each, and which one serves."""
    from services.common.model_ops import model_versions

    settings, store = _settings_and_store()
    versions = asyncio.run(model_versions(settings.kafka, store, campaign))
    table = Table("version", "quality", "reward_auc", "rows", "serving", title=campaign)
    for v in versions:
        table.add_row(
            v.version,
            "passed" if v.quality_passed else "FAILED",
            "nan" if math.isnan(v.reward_auc) else f"{v.reward_auc:.3f}",
            "" if v.training_rows is None else str(v.training_rows),
            "◀ serving" if v.serving else "",
        )
    Console().print(table)


@models_app.command("pin")
def pin(
    campaign: str = typer.Argument(..., help="Campaign id."),
    version: str = typer.Argument(..., help="A stored version (see `admuse models list`)."),
) -> None:
    """Serve a stored version now (published again to admuse.models)."""
    from services.common.model_ops import ModelOpError, pin_model

    settings, store = _settings_and_store()
    try:
        asyncio.run(pin_model(settings.kafka, store, campaign, version))
    except ModelOpError as exc:
        Console(stderr=True).print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    Console(stderr=True).print(f"published {campaign} {version}; inference swaps it in")


@models_app.command("rollback")
def rollback(campaign: str = typer.Argument(..., help="Campaign id.")) -> None:
    """Serve the newest stored version older than the serving one."""
    from services.common.model_ops import ModelOpError, rollback_model

    settings, store = _settings_and_store()
    try:
        serving, to = asyncio.run(rollback_model(settings.kafka, store, campaign))
    except ModelOpError as exc:
        Console(stderr=True).print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    Console(stderr=True).print(f"rolled {campaign} back from {serving} to {to}")
