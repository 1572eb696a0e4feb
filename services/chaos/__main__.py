"""`python -m services.chaos`: run the fault suite, print the books, exit 1 if they do not
balance (see services/chaos/run.py and books.py; `make chaos` runs it)."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from services.chaos.books import problems
from services.chaos.faults import KINDS

_REPO = Path(__file__).resolve().parents[2]


def main(
    cycles: Annotated[int, typer.Option(help="Cycles; each injects every fault kind.")] = 2,
    kinds: Annotated[str, typer.Option(help="Comma-separated fault kinds.")] = ",".join(KINDS),
    port: Annotated[int, typer.Option(help="Port of the suite's own broker (and port+1).")] = 19792,
    rate: Annotated[float, typer.Option(help="Simulator arrivals per second.")] = 15.0,
    scenario: Annotated[str, typer.Option(help="Bundled scenario or YAML path.")] = "e2e",
    gap: Annotated[float, typer.Option(help="Quiet seconds after each recovery.")] = 5.0,
    pause: Annotated[float, typer.Option(help="Seconds a paused service stays stopped.")] = 8.0,
    broker_down: Annotated[float, typer.Option(help="Seconds the broker stays down.")] = 10.0,
    min_answered: Annotated[
        int,
        typer.Option(
            help="Traffic goes on after the faults until this many Decides are answered "
            "(at most 2 min more)."
        ),
    ] = 0,
    run_dir: Annotated[Path | None, typer.Option(help="Default .run/chaos-<time>.")] = None,
) -> None:
    """Inject faults into a loaded stack; reconcile the topics; exit 1 on any imbalance."""
    from services.chaos.run import run_suite
    from services.common.logging import configure_logging

    console = Console()
    configure_logging("ERROR", "console")  # the suite says what happens
    chosen = tuple(k.strip() for k in kinds.split(",") if k.strip())
    unknown = [k for k in chosen if k not in KINDS]
    if unknown:
        raise typer.BadParameter(f"unknown fault kinds {unknown}; known: {', '.join(KINDS)}")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run = (run_dir or _REPO / ".run" / f"chaos-{stamp}").resolve()
    run.mkdir(parents=True, exist_ok=True)
    books = asyncio.run(
        run_suite(
            run,
            port=port,
            cycles=cycles,
            kinds=chosen,
            rate=rate,
            scenario_name=scenario,
            gap_s=gap,
            min_answered=min_answered,
            pause_s=pause,
            broker_down_s=broker_down,
            say=lambda m: console.print(m, highlight=False),
        )
    )
    print_books(console, books)
    console.print(f"books: {run / 'chaos.json'}")
    found = problems(books)
    for p in found:
        console.print(f"[red]IMBALANCE: {p}[/red]")
    raise typer.Exit(1 if found else 0)


def print_books(console: Console, books: dict[str, Any]) -> None:
    table = Table(title="fault suite: the books")
    table.add_column("book")
    table.add_column("count", justify="right")
    for section in ("raw", "simulator", "decisions", "rewards", "models"):
        for key, value in books[section].items():
            table.add_row(f"{section}.{key}", f"{value:,}")
    console.print(table)
    faults = Table(title="availability by fault kind")
    for col in ("fault", "injected", "Decide failures", "seconds with failures", "worst (s)"):
        faults.add_column(col, justify="left" if col == "fault" else "right")
    for kind, a in books["availability"].items():
        faults.add_row(
            kind,
            str(int(a["faults"])),
            f"{int(a['decide_failures']):,}",
            f"{a['unavailable_s']:.0f}",
            f"{a['worst_s']:.0f}",
        )
    console.print(faults)
    shares = [f["cpu_share_while_down"] for f in books["faults"] if "cpu_share_while_down" in f]
    if shares:
        worst = {n: max(s.get(n, 0.0) for s in shares) for n in shares[0]}
        console.print(
            "CPU while the broker was away (share of a core, worst of "
            f"{len(shares)}): " + ", ".join(f"{n} {v:.0%}" for n, v in worst.items())
        )
    svc = Table(title="services")
    for col in ("service", "state", "restarts", "down (s)"):
        svc.add_column(col)
    for name, s in books["services"].items():
        svc.add_row(name, s["state"], str(s["restarts"]), f"{s['down_s']:.0f}")
    console.print(svc)


if __name__ == "__main__":
    sys.exit(typer.run(main))
