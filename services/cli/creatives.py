"""`admuse creatives list|approve|block|retire|pin|unpin`: the review of creatives by hand.

The rules are services/common/review.py; the write path, shared with the console, is
`services.common.campaign_ops.review_creative`: it republishes the creative's record on
`admuse.creatives`, where inference reads it within a second.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

__all__ = ["register"]

_Id = Annotated[str, typer.Argument(help="The creative's id (`admuse creatives list`).")]
_Segment = Annotated[
    str | None,
    typer.Option(help="Pin for this segment only (e.g. 'country=DE'); default: every segment "
                 "the creative serves ('*')."),
]  # fmt: skip
_By = Annotated[
    str | None, typer.Option("--by", help="Who acts (recorded as reviewed_by); default: $USER.")
]


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Review creatives: approve, block, retire, pin.", no_args_is_help=True)
    group.command("list")(list_creatives)
    for action in ("approve", "block", "retire", "unpin"):
        group.command(action, help=_HELP[action])(_verb(action))
    group.command("pin")(pin)
    app.add_typer(group, name="creatives")


_HELP = {
    "approve": "Approve a pending generated creative: it serves (as a challenger) at once.",
    "block": "Block a creative: never served again; nothing makes it live again.",
    "retire": "Retire a creative: it stops serving (a catalog seed returns on the next apply).",
    "unpin": "Remove a creative's pin.",
}


def _verb(action: str):  # type: ignore[no-untyped-def]
    def command(creative_id: _Id, by: _By = None) -> None:
        _review(creative_id, action, by)

    command.__name__ = action
    return command


def pin(
    creative_id: _Id,
    segment: _Segment = None,
    by: _By = None,
) -> None:
    """Pin a live creative: every optimized-arm Decide of its scope serves it."""
    _review(creative_id, "pin", by, segment)


def _review(creative_id: str, action: str, by: str | None, segment: str | None = None) -> None:
    from services.common.campaign_ops import operator, review_creative
    from services.common.review import ReviewError
    from services.common.settings import KafkaSettings

    who = by or operator()
    try:
        change = asyncio.run(
            review_creative(KafkaSettings(), creative_id, action, by=who, segment=segment)
        )
    except ReviewError as exc:
        Console(stderr=True).print(f"[red]{action} refused[/red]: {escape(str(exc))}")
        raise typer.Exit(3 if exc.reason == "unknown_creative" else 2) from None
    after = change.after
    what = f"{after['status']}" + (f", pinned for {after['pinned']}" if after.get("pinned") else "")
    verb = "is now" if change.changed else "is already"
    Console().print(f"creative [bold]{escape(creative_id)}[/bold] {verb} {escape(what)}")


def list_creatives(
    campaign: Annotated[str | None, typer.Option(help="Only this campaign's creatives.")] = None,
    status: Annotated[
        str | None, typer.Option(help="pending (the review queue), live, retired or blocked.")
    ] = None,
) -> None:
    """List creatives with their status, stage, pin and origin."""
    from services.common.campaign_ops import read_creatives
    from services.common.settings import KafkaSettings

    found = asyncio.run(read_creatives(KafkaSettings(), campaign, status))
    table = Table("campaign", "status", "stage", "pinned", "origin", "segment", "model",
                  "predicted")  # fmt: skip
    width = max((len(cid) for cid in found), default=11)
    table.columns.insert(0, Column("creative_id", no_wrap=True, min_width=width))  # never cut
    for cid, c in sorted(found.items()):
        predicted = c.get("predicted_reward")
        cells = (
            cid, c["campaign_id"], c["status"], c.get("stage") or "-", c.get("pinned") or "-",
            c["origin"], c.get("segment") or "*", c.get("model_version") or "-",
        )  # fmt: skip
        table.add_row(*map(escape, cells), "-" if predicted is None else f"{predicted:.4f}")
    Console().print(table)
    Console().print(f"{len(found)} creative(s)")
