"""`admuse models list|pin|rollback <campaign>`: which model versions exist and which serves.

Versions are read from the model store (`ADMUSE_MODEL_STORE_URL`, one folder per version with
its signed artifacts); the serving one is the newest record for the campaign on admuse.models.
`pin` publishes the ModelPublished record of a stored version again, so inference swaps it in
(verifying its signature and quality verdict as for any publication); `rollback` pins the
newest stored version older than the one serving. Either holds until the trainer publishes a
newer model (which is then watched by the automatic rollback).
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

__all__ = [
    "ModelOpError",
    "pin_version",
    "register",
    "rollback_model",
    "serving_version",
    "stored_versions",
]

models_app = typer.Typer(help="Model versions: list, pin, roll back.", no_args_is_help=True)
_FILES = {
    "generator": "generator.onnx",
    "reward_model": "reward_model.onnx",
    "metadata": "metadata.json",
    "signature": "signature.json",
}


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")


def _settings() -> Any:
    from services.common.settings import ServiceSettings

    return ServiceSettings()


def _versions(store: Any, campaign: str) -> list[str]:
    """Stored versions with a signature, oldest first (versions start with their UTC time)."""
    return [
        v for v in store.list_dir(campaign) if "signature.json" in store.list_dir(f"{campaign}/{v}")
    ]


def _record(store: Any, campaign: str, version: str) -> dict[str, Any]:
    from services.common.model_store import sha256_hex

    artifacts = []
    blobs = {}
    for role, name in _FILES.items():
        uri = store.uri_of(f"{campaign}/{version}/{name}")
        blobs[role] = data = store.get(uri)
        artifacts.append({"name": role, "uri": uri, "sha256": sha256_hex(data), "size": len(data)})
    meta = json.loads(blobs["metadata"])
    metrics = {k: float(v) for k, v in meta.get("metrics", {}).items() if _finite(v)}
    return {
        "model_name": campaign,
        "campaign_id": campaign,
        "version": version,
        "artifacts": artifacts,
        "metrics": metrics,
        "training_rows": int(meta.get("training_rows", 0)),
        "seed": int(meta.get("seed", 0)),
        "published_at": datetime.now(UTC),
    }


def _finite(v: object) -> bool:
    return isinstance(v, int | float) and float("-inf") < float(v) < float("inf")


async def _serving(settings: Any, campaign: str) -> str | None:
    """The version of the newest admuse.models record for `campaign` (None: none)."""
    from services.common.codec import SchemaRegistry
    from services.common.kafka import read_from_beginning, wait_for_broker
    from services.common.topics import Topics

    topics = Topics.from_settings(settings.kafka)
    codec = SchemaRegistry.load().codec("ModelPublished")
    await wait_for_broker(settings.kafka, 30)
    latest: list[str] = []

    def keep(rec: Any) -> None:
        if rec.key == campaign.encode() and rec.value is not None:
            latest.append(codec.decode(rec.value)["version"])

    await read_from_beginning(settings.kafka, [topics.models.name], keep, timeout_s=60)
    return latest[-1] if latest else None


async def _publish(settings: Any, record: dict[str, Any]) -> None:
    from services.common.codec import SchemaRegistry
    from services.common.kafka import make_producer
    from services.common.topics import Topics

    topics = Topics.from_settings(settings.kafka)
    producer = make_producer(settings.kafka)
    await producer.start()
    try:
        codec = SchemaRegistry.load().codec("ModelPublished")
        await producer.send_and_wait(
            topics.models.name, codec.encode(record), key=record["model_name"].encode()
        )
    finally:
        await producer.stop()


@models_app.command("list")
def list_models(campaign: str = typer.Argument(..., help="Campaign id.")) -> None:
    """Stored versions of a campaign, the quality verdict of each, and which one serves."""
    from services.common.model_store import ModelStore

    settings = _settings()
    store = ModelStore(settings.model_store_url)
    serving = asyncio.run(_serving(settings, campaign))
    table = Table("version", "quality", "reward_auc", "rows", "serving", title=campaign)
    for version in _versions(store, campaign):
        meta = json.loads(store.get(store.uri_of(f"{campaign}/{version}/metadata.json")))
        quality = meta.get("quality") or {}
        table.add_row(
            version,
            "passed" if quality.get("passed") else "FAILED",
            f"{meta.get('metrics', {}).get('reward_auc', float('nan')):.3f}",
            str(meta.get("training_rows", "")),
            "◀ serving" if version == serving else "",
        )
    Console().print(table)


class ModelOpError(ValueError):
    """A pin or rollback that cannot be done (no such version, nothing older)."""


def stored_versions(store: Any, campaign: str) -> list[dict[str, Any]]:
    """Every signed version of `campaign`, oldest first, with its metadata (quality report)."""
    out = []
    for version in _versions(store, campaign):
        meta = json.loads(store.get(store.uri_of(f"{campaign}/{version}/metadata.json")))
        out.append({"version": version, "metadata": meta})
    return out


async def serving_version(settings: Any, campaign: str) -> str | None:
    """The version inference serves now (the newest admuse.models record of `campaign`)."""
    return await _serving(settings, campaign)


async def pin_version(settings: Any, campaign: str, version: str) -> None:
    """Serve a stored, signed version now: publish its record to admuse.models again."""
    from services.common.model_store import ModelStore

    store = ModelStore(settings.model_store_url)
    if version not in _versions(store, campaign):
        raise ModelOpError(f"{campaign} has no signed version {version!r}")
    await _publish(settings, _record(store, campaign, version))


async def rollback_model(settings: Any, campaign: str) -> tuple[str | None, str]:
    """Serve the newest stored version older than the serving one; (from, to)."""
    from services.common.model_store import ModelStore

    store = ModelStore(settings.model_store_url)
    serving = await _serving(settings, campaign)
    older = [v for v in _versions(store, campaign) if serving is None or v < serving]
    if not older:
        raise ModelOpError(f"{campaign}: no stored version before {serving}")
    await _publish(settings, _record(store, campaign, older[-1]))
    return serving, older[-1]


@models_app.command("pin")
def pin(
    campaign: str = typer.Argument(..., help="Campaign id."),
    version: str = typer.Argument(..., help="A stored version (see `admuse models list`)."),
) -> None:
    """Serve a stored version now (published again to admuse.models)."""
    try:
        asyncio.run(pin_version(_settings(), campaign, version))
    except ModelOpError as exc:
        Console(stderr=True).print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    Console(stderr=True).print(f"published {campaign} {version}; inference swaps it in")


@models_app.command("rollback")
def rollback(campaign: str = typer.Argument(..., help="Campaign id.")) -> None:
    """Serve the newest stored version older than the serving one."""
    try:
        serving, to = asyncio.run(rollback_model(_settings(), campaign))
    except ModelOpError as exc:
        Console(stderr=True).print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    Console(stderr=True).print(f"rolled {campaign} back from {serving} to {to}")
