"""`admuse replay FILE`: bring your own logs (CSV, JSONL or Parquet) into admuse.

`--to kafka` writes each row as a Decision (admuse.decisions) and its impression/click events
(admuse.events.raw), so the live loop learns from them; `--to ope` evaluates a target policy on
them directly (same output as `admuse ope`). Bad rows are listed by number; by default any bad
row stops the replay before anything is written.
"""

from __future__ import annotations

import asyncio
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from services.cli.ope import fail, load_replay, run_ope

if TYPE_CHECKING:
    from services.analysis import LoggedData, ReplayWrite


class Target(StrEnum):
    kafka = "kafka"
    ope = "ope"


def register(app: typer.Typer) -> None:
    app.command("replay")(replay)


def replay(
    file: Annotated[Path, typer.Argument(help="Log file: .csv, .tsv, .jsonl or .parquet.")],
    mapping: Annotated[
        str,
        typer.Option(
            help="Columns by role: action=…,reward=…,propensity=…[,context=a+b][,timestamp=…]"
            "[,position=…][,user=…][,arm=…], or a JSON/YAML file with those keys."
        ),
    ],
    to: Annotated[Target, typer.Option(help="kafka: write for the live loop; ope: evaluate.")],
    campaign: Annotated[
        str | None, typer.Option(help="Campaign the rows belong to (required for kafka).")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="auto, csv, jsonl or parquet.")] = "auto",
    skip_bad_rows: Annotated[
        bool, typer.Option(help="Leave out bad rows (they are still listed).")
    ] = False,
    attribution_window_s: Annotated[
        float, typer.Option(help="Attribution window written on the decisions (kafka).")
    ] = 3600.0,
    policy: Annotated[
        str, typer.Option(help="Target policy for --to ope (see `admuse ope --help`).")
    ] = "uniform",
    min_ess: Annotated[float, typer.Option(help="ope: refuse below this ESS.")] = 100,
    max_unsupported: Annotated[
        float, typer.Option(help="ope: refuse above this unsupported target mass.")
    ] = 0.01,
    force: Annotated[bool, typer.Option(help="ope: report even when support is thin.")] = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="ope: write JSON.")] = None,
    html_out: Annotated[Path | None, typer.Option("--html", help="ope: write HTML.")] = None,
) -> None:
    """Replay a log file into Kafka, or straight into off-policy evaluation."""
    from rich.console import Console

    if to is Target.kafka:
        if not campaign:
            fail("--to kafka needs --campaign")
        from services.common.settings import PseudonymSecretSetting

        try:
            secret = PseudonymSecretSetting().pseudonym_key()
        except ValueError as exc:
            fail(
                f"--to kafka: {exc}; the replayed decisions must carry the same user "
                "pseudonyms as their events"
            )
        if attribution_window_s <= 0:
            fail("--attribution-window-s must be positive")
    data = load_replay(file, mapping, fmt, skip_bad_rows)
    if to is Target.ope:
        run_ope(
            data,
            policy,
            min_ess=min_ess,
            max_unsupported=max_unsupported,
            force=force,
            json_out=json_out,
            html_out=html_out,
        )
        return
    written = _write(data, campaign or "", file.name, secret, attribution_window_s)
    Console().print(
        f"replayed {written.decisions} decision(s) and {written.events} event(s) of "
        f"{file.name} into campaign {campaign}"
    )


def _write(
    data: LoggedData, campaign: str, source: str, secret: bytes, window_s: float
) -> ReplayWrite:
    from services.analysis import write_replay
    from services.common.codec import SchemaRegistry
    from services.common.kafka import ensure_topics, wait_for_broker
    from services.common.settings import KafkaSettings
    from services.common.topics import Topics

    kafka = KafkaSettings()

    async def run() -> ReplayWrite:
        await wait_for_broker(kafka, 30)
        await ensure_topics(kafka, Topics.from_settings(kafka))
        return await write_replay(
            kafka,
            SchemaRegistry.load(),
            data,
            campaign_id=campaign,
            source=source,
            pseudonym_secret=secret,
            attribution_window_ms=int(window_s * 1000),
        )

    return asyncio.run(run())
