"""The live view of `admuse demo`: progress, arms, creatives and services while traffic plays."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

CLICKS = {"rate": "CTR", "outcomes": "clicks"}


async def show_live(
    console: Console,
    sim: asyncio.Task[Any],
    box: dict[str, Any],
    watch: Any,
    supervisor: Any,
    budget: float,
    live: bool,
    measure: Mapping[str, str] = CLICKS,
) -> None:
    if not live or not console.is_terminal:
        while not sim.done():
            await asyncio.wait([sim], timeout=10)
            if "player" in box:
                line = status_line(box["player"].stats, watch, budget, supervisor, measure)
                console.print(line)
        return
    with Live(console=console, refresh_per_second=2, transient=False) as view:
        while not sim.done():
            if "player" in box:
                view.update(live_view(box["player"], watch, supervisor, budget, measure))
            await asyncio.wait([sim], timeout=0.5)
        if "player" in box:
            view.update(live_view(box["player"], watch, supervisor, budget, measure))


def status_line(
    stats: Any, watch: Any, budget: float, supervisor: Any, measure: Mapping[str, str] = CLICKS
) -> str:
    elapsed = time.monotonic() - stats.started
    rate = measure["rate"]
    arms = ", ".join(
        f"{a} {s.impressions} imp {s.ctr:.1%} {rate}" for a, s in sorted(stats.arms.items())
    )
    c = watch.counts()
    return (
        f"{elapsed:5.0f}/{budget:.0f}s  {stats.requests} requests  {arms}  "
        f"models {c['models']}  generated admitted {c['generated_admitted']}  "
        f"errors {sum(stats.errors.values())}  events unsent {stats.events_unsent}  "
        f"services: {supervisor.line()}"
    )


def live_view(
    player: Any, watch: Any, supervisor: Any, budget: float, measure: Mapping[str, str] = CLICKS
) -> Group:
    s = player.stats
    rate = measure["rate"]
    # the truth's expected reward: true CTR for clicks, the reward's currency for events
    truth = "true CTR" if rate == "CTR" else "expected reward"
    elapsed = time.monotonic() - s.started
    table = Table(
        title=f"admuse demo — {elapsed:.0f}s of {budget:.0f}s, {s.requests:,} requests",
        title_justify="left",
    )
    for col in ("arm", "impressions", measure["outcomes"], rate, truth, "regret / imp"):
        table.add_column(col, justify="left" if col == "arm" else "right")
    for arm, a in sorted(s.arms.items()):
        n = max(1, a.impressions)
        table.add_row(
            arm,
            f"{a.impressions:,}",
            f"{a.clicks:,}",
            f"{a.ctr:.2%}",
            f"{a.expected_reward / n:.2%}",
            f"{a.regret / n:.4f}",
        )
    c = watch.counts()
    latest = watch.models[-1]["version"] if watch.models else "none yet"
    lat = sorted(s.latencies_ms)
    p50 = lat[len(lat) // 2] if lat else 0.0
    lags = sorted(s.loop_lag_ms)
    lag50 = lags[len(lags) // 2] if lags else 0.0
    alive = ", ".join(
        f"{n} {st['state'] if st['state'] == 'up' else '[red]' + st['state'] + '[/red]'}"
        + (f" ({st['restarts']} restarts)" if st["restarts"] else "")
        for n, st in supervisor.status().items()
    )
    errors = ", ".join(f"{k}: {v}" for k, v in s.errors.items()) or "none"
    return Group(
        table,
        f"models published: {c['models']} (latest {latest}); served with a model: "
        f"{sum(s.model_versions.values()):,}",
        f"creatives: {c['catalog_live']} catalog live, "
        f"{c['generated_admitted']} generated admitted ({c['generated_live']} live), "
        f"{c['retired']} retired; generated impressions "
        f"{s.generated_served:,}",
        f"events sent {s.events_sent:,}, not sent {s.events_unsent:,}; Decide p50 {p50:.1f} ms "
        f"(simulator loop lag "
        f"{lag50:.0f} ms); errors {errors}; skipped "
        f"{s.skipped}",
        f"services: {alive}",
    )
