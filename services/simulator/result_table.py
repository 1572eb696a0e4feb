"""The demo's result table on the terminal (`print_result`) and the arms it shows."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from services.simulator.report import ARMS, measure

__all__ = ["LABELS", "present_arms", "print_result"]


def print_result(result: Mapping[str, Any], console: Any, report_path: Path | None = None) -> None:
    """The result table, regret, creatives and best-vs-best, on a rich console."""
    from rich.table import Table

    arms, cmp, gen = result["arms"], result["comparison"], result.get("generation")
    m = measure(result)
    rate, outcomes = m["rate"], m["outcomes"]
    shown = present_arms(result)
    table = Table(title=f"{' vs '.join(LABELS[a] for a in shown)} — {result['campaign_id']}")
    for col in (
        "policy",
        "impressions",
        "never shown",
        outcomes,
        rate,
        "95% interval",
        f"true {rate}",
        "regret / impression",
    ):
        table.add_column(col, justify="right" if col != "policy" else "left")
    for a in shown:
        s = arms[a]
        table.add_row(
            LABELS[a],
            f"{s['impressions']:,}",
            f"{s.get('never_shown', 0):,}",
            f"{s['clicks']:,}",
            _pct(s.get("ctr")),
            f"{_pct(s.get('ctr_low'))} – {_pct(s.get('ctr_high'))}",
            _pct(s["true_ctr"]),
            f"{s['regret_per_impression']:.4f}",
        )
    console.print(table)
    if gen:
        console.print(
            f"[bold]what generation adds[/bold] (full loop vs catalog bandit): lift "
            f"{gen['lift']:+.1%} (95% interval {gen['lift_low']:+.1%} to {gen['lift_high']:+.1%}),"
            f" P(full loop beats catalog bandit) = {gen['prob_full_loop_beats_catalog']:.3f}; "
            f"true {rate} {gen['true_ctr_difference']:+.3%} (95% interval "
            f"{gen['true_ctr_difference_low']:+.3%} to {gen['true_ctr_difference_high']:+.3%})"
            + _stratified_text(gen)
        )
    if cmp:
        observed = ", ".join(
            f"{a} {cmp['observed_shares'][a]:.1%} (configured {v:.0%})"
            for a, v in cmp["expected_shares"].items()
        )
        console.print(
            f"full loop vs control: relative lift {cmp['lift']:+.1%} (95% interval "
            f"{cmp['lift_low']:+.1%} to {cmp['lift_high']:+.1%}); P(optimized beats control) = "
            f"{cmp['prob_optimized_beats_control']:.3f}; sample ratio {observed}: SRM p = "
            f"{_p(cmp['srm_p_value'])} ({'MISMATCH' if cmp['srm_flagged'] else 'ok'})"
        )
    else:
        console.print("[yellow]not enough traffic in both arms to compare them[/yellow]")
    regret = Table(title="regret vs the oracle per impression, by quarter of the run")
    regret.add_column("policy")
    for q in ("Q1", "Q2", "Q3", "Q4", "total regret"):
        regret.add_column(q, justify="right")
    for a in shown:
        qs = arms[a]["regret_by_quarter"]
        regret.add_row(
            LABELS[a],
            *[f"{x:.4f}" if x is not None else "-" for x in qs],
            f"{arms[a]['regret']:.1f}",
        )
    console.print(regret)
    cr = result["creatives"]
    console.print(
        f"creatives: {cr['catalog']} made by people; {cr['generated_admitted']} generated and "
        f"admitted, {cr['generated_served']} of them served "
        f"({cr['generated_share_optimized']:.1%} of optimized traffic), "
        f"{cr.get('promoted', 0)} promoted; {cr['retired']} retired; "
        f"{cr['models']} model version(s) published"
    )
    best = Table(title=f"best generated vs best human creative, by true {rate}")
    for col in (
        "segment",
        "best human",
        f"true {rate}",
        "best generated",
        f"true {rate} ",
        "optimum",
    ):
        best.add_column(col)
    for b in result["best"]:
        g = b["best_generated"]
        best.add_row(
            b["segment"],
            b["best_human"]["creative_id"],
            _pct(b["best_human"]["true_ctr"]),
            g["creative_id"] if g else "(none)",
            _pct(g["true_ctr"]) if g else "-",
            _pct(b["optimum_true_ctr"])
            + (" (outside catalog)" if b["optimum_outside_catalog"] else ""),
        )
    console.print(best)
    ev = result.get("events")
    if ev is not None:
        style = "red" if ev["events_unsent"] else "green"
        console.print(
            f"[{style}]events: {ev['events_sent']:,} written to Kafka, {ev['events_unsent']:,} "
            f"not written ({ev['clicks_unsent']:,} of them clicks)[/{style}]; "
            f"{result['failed']:,} Decide request(s) failed"
        )
    if report_path:
        console.print(f"report: [bold]{report_path}[/bold]")


LABELS = {"control": "control", "catalog": "catalog bandit", "optimized": "full loop"}


def _stratified_text(gen: Mapping[str, Any]) -> str:
    d = gen.get("true_ctr_difference_stratified")
    if d is None or not math.isfinite(d):
        return ""
    lo, hi = gen["true_ctr_difference_stratified_low"], gen["true_ctr_difference_stratified_high"]
    return f"; per segment {d:+.3%} (95% interval {lo:+.3%} to {hi:+.3%})"


def present_arms(result: Mapping[str, Any]) -> list[str]:
    """The arms to show: control and the full loop always, the catalog bandit when it served."""
    return [a for a in ARMS if a != "catalog" or result["arms"]["catalog"]["impressions"]]


def _p(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"


def _pct(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2%}"
