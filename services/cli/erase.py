"""`admuse erase`: ask every service to delete what it keeps about a user (GDPR art. 17).

The app's raw user id is turned into its pseudonym here, with the same secret ingestion and
inference use (`ADMUSE_PSEUDONYM_SECRET`), and only the pseudonym is published: an
`ErasureRequest` on admuse.erasure, keyed by the pseudonym, for downstream state to delete.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
import uuid

import typer
from pydantic import Field
from rich.console import Console

from services.common.settings import KafkaSettings, PseudonymSecretSetting

__all__ = ["erasure_request", "register"]

_PSEUDONYM = re.compile(r"^[0-9a-f]{64}$")


class _EraseSettings(PseudonymSecretSetting):
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)


def register(app: typer.Typer) -> None:
    app.command("erase")(erase)


def erasure_request(pseudonym: str, reason: str | None, now_ms: int | None = None) -> dict:
    """The ErasureRequest record for one pseudonym."""
    return {
        "request_id": str(uuid.uuid4()),
        "user_id": pseudonym,
        "requested_at": now_ms if now_ms is not None else time.time_ns() // 1_000_000,
        "reason": reason,
    }


def erase(
    user: list[str] = typer.Option(  # noqa: B008 - typer's declaration style
        None, "--user", "-u", help="The app's user id (repeatable). Pseudonymized before sending."
    ),
    pseudonym: list[str] = typer.Option(  # noqa: B008
        None, "--pseudonym", help="An already pseudonymized id (64 hex chars), repeatable."
    ),
    reason: str = typer.Option("gdpr-art17", help="Why; stored in the request."),
) -> None:
    """Publish an ErasureRequest to admuse.erasure for each user (by pseudonym only)."""
    from services.common.codec import SchemaRegistry
    from services.common.kafka import ensure_topics, make_producer, wait_for_broker
    from services.common.privacy import Pseudonymizer
    from services.common.topics import Topics

    console = Console(stderr=True)
    if not user and not pseudonym:
        console.print("[red]give --user <app user id> or --pseudonym <hex>[/red]")
        raise typer.Exit(2)
    settings = _EraseSettings()
    pseudonyms = [p.lower() for p in pseudonym or ()]
    bad = [p for p in pseudonyms if not _PSEUDONYM.match(p)]
    if bad:
        console.print(f"[red]not a pseudonym (64 hex characters): {', '.join(bad)}[/red]")
        raise typer.Exit(2)
    if user:
        try:
            pseudonymize = Pseudonymizer(settings.pseudonym_key())
        except ValueError as exc:
            console.print(f"[red]{exc} (needed to find the user's pseudonym)[/red]")
            raise typer.Exit(2) from None
        pseudonyms += [pseudonymize(u) for u in user]

    kafka = settings.kafka
    topics = Topics.from_settings(kafka)
    codec = SchemaRegistry.load().codec("ErasureRequest")
    requests = [erasure_request(p, reason) for p in pseudonyms]

    async def publish() -> None:
        await wait_for_broker(kafka, 30)
        await ensure_topics(kafka, [topics.erasure])
        producer = make_producer(kafka)
        await producer.start()
        try:
            for req in requests:
                await producer.send_and_wait(
                    topics.erasure.name, codec.encode(req), key=req["user_id"].encode()
                )
        finally:
            await producer.stop()

    asyncio.run(publish())
    for req in requests:
        sys.stdout.write(f"{req['request_id']} {req['user_id']}\n")
    console.print(f"published {len(requests)} erasure request(s) to {topics.erasure.name}")
