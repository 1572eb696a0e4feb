"""`admuse report`: is the optimizer helping? The experiment report of one campaign.

Reads admuse.decisions and admuse.rewards (a time range or offsets), the campaign record (for
the configured holdout share) and its creatives (for attribute effects), and prints per arm
impressions, reward rate, lift over control, P(beats control), an always-valid sequential test
and the SRM check, then per creative and per attribute value effects.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from services.cli.ope import EXIT_BAD_INPUT, EXIT_REFUSED, fail

if TYPE_CHECKING:
    from services.analysis import CampaignLogs, ReadWindow

__all__ = ["EXIT_BAD_INPUT", "EXIT_SRM", "register", "report"]

EXIT_SRM = 4


def register(app: typer.Typer) -> None:
    app.command("report")(report)


def report(
    campaign: Annotated[str, typer.Option(help="Campaign id.")],
    from_: Annotated[
        str | None,
        typer.Option("--from", help="Decisions from (ISO-8601, epoch ms, or -2h / -7d)."),
    ] = None,
    to: Annotated[str | None, typer.Option(help="Decisions before this time.")] = None,
    decisions_offsets: Annotated[
        str | None, typer.Option(help="admuse.decisions offsets: START[-END] or P:START[-END],…")
    ] = None,
    rewards_offsets: Annotated[
        str | None, typer.Option(help="admuse.rewards offsets: START[-END] or P:START[-END],…")
    ] = None,
    control_share: Annotated[
        float | None,
        typer.Option(help="Expected control share for the SRM check (default: the campaign's)."),
    ] = None,
    looks: Annotated[int, typer.Option(help="Looks of the sequential test over the range.")] = 200,
    limit: Annotated[int, typer.Option(help="Rows per effects table on the terminal.")] = 20,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the report as JSON.")
    ] = None,
    html_out: Annotated[Path | None, typer.Option("--html", help="Write an HTML page.")] = None,
    fail_on_srm: Annotated[
        bool, typer.Option(help=f"Exit {EXIT_SRM} when the SRM check flags the split.")
    ] = False,
    max_pending: Annotated[
        float | None,
        typer.Option(
            help="Refuse (exit 3) when more than this share of the decisions has no Reward "
            "yet; unset: say so in the notes above 5 %, never refuse."
        ),
    ] = None,
) -> None:
    """Experiment report: arms, lift, P(beats control), sequential test, SRM, effects."""
    from rich.console import Console

    from services.analysis import (
        ReadWindow,
        parse_offsets,
        parse_time,
        print_report,
        report_from_logs,
        report_html,
        write_html,
        write_json,
    )

    if control_share is not None and not 0 < control_share < 1:
        fail(f"--control-share must be in (0, 1), got {control_share}")
    try:
        from_ms = parse_time(from_) if from_ else None
        to_ms = parse_time(to) if to else None
        d_window = ReadWindow(
            from_ms, to_ms, parse_offsets(decisions_offsets) if decisions_offsets else None
        )
        r_window = ReadWindow(
            from_ms, to_ms, parse_offsets(rewards_offsets) if rewards_offsets else None
        )
    except ValueError as exc:
        fail(str(exc))
    logs = _load(campaign, d_window, r_window)
    result = report_from_logs(
        campaign, logs, control_share=control_share, from_ms=from_ms, to_ms=to_ms, looks=looks
    )
    pending = sum(row.pending for row in result.arms)
    total = sum(row.impressions for row in result.arms)
    share = pending / total if total else 0.0
    print_report(result, Console(), limit=limit)
    if json_out:
        write_json(json_out, result)
    if html_out:
        write_html(html_out, report_html(result))
    if fail_on_srm and result.srm is not None and result.srm.flagged:
        raise typer.Exit(EXIT_SRM)
    if max_pending is not None and share > max_pending:
        Console(stderr=True).print(
            f"refused: {pending} of {total} decisions ({share:.1%}) have no Reward yet, more "
            f"than --max-pending {max_pending}; wait for their windows to close",
            style="bold red",
            highlight=False,
        )
        raise typer.Exit(EXIT_REFUSED)


def _load(campaign: str, d_window: ReadWindow, r_window: ReadWindow) -> CampaignLogs:
    from services.analysis import load_campaign
    from services.common.codec import SchemaRegistry
    from services.common.kafka import wait_for_broker
    from services.common.settings import KafkaSettings

    kafka = KafkaSettings()

    async def run() -> CampaignLogs:
        await wait_for_broker(kafka, 30)
        return await load_campaign(
            kafka, SchemaRegistry.load(), campaign, decisions=d_window, rewards=r_window
        )

    try:
        return asyncio.run(run())
    except (LookupError, TimeoutError) as exc:
        fail(str(exc))
