"""Show results: rich tables on the terminal, JSON for machines, one self-contained HTML page
for people (inline CSS and SVG, no scripts, no external files)."""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from services.analysis.effects import GroupEffect
from services.analysis.ope import OpeResult
from services.analysis.report import CampaignReport

__all__ = [
    "ope_html",
    "print_ope",
    "print_report",
    "report_html",
    "write_html",
    "write_json",
]


def _pct(x: float | None, digits: int = 2) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{100 * x:.{digits}f}%"


def _num(x: float | None, digits: int = 4) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.{digits}g}"


def _signed_pct(x: float | None) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{100 * x:+.1f}%"


def _when(ms: int | None) -> str:
    return (
        "–" if ms is None else datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")
    )


def _arm_rows(report: CampaignReport) -> list[list[str]]:
    rows = []
    for a in report.arms:
        comp = report.comparisons.get(a.arm)
        rows.append(
            [
                a.arm,
                str(a.impressions),
                str(a.outcomes),
                str(a.unshown),
                f"{_pct(a.rewarded.rate)} [{_pct(a.rewarded.low)}, {_pct(a.rewarded.high)}]",
                _num(a.mean_reward),
                "–"
                if comp is None
                else f"{_signed_pct(comp.lift.estimate)} [{_signed_pct(comp.lift.low)}, "
                f"{_signed_pct(comp.lift.high)}]",
                "–" if comp is None else _pct(comp.prob_treatment_beats_control, 1),
                "–"
                if comp is None
                else f"p={_num(comp.sequential.p_value, 3)}"
                + (" significant" if comp.sequential.rejected else ""),
            ]
        )
    return rows


_ARM_HEAD = [
    "arm",
    "impressions",
    "outcomes",
    "never shown",
    "reward rate [95%]",
    "mean reward",
    "lift vs control [95%]",
    "P(beats control)",
    "always-valid test",
]
_EFFECT_HEAD = ["", "n", "rate [95%]", "segment avg", "lift [95%]"]


def _effect_rows(effects: Iterable[GroupEffect], limit: int | None = None) -> list[list[str]]:
    rows = []
    for i, e in enumerate(effects):
        if limit is not None and i >= limit:
            break
        rows.append(
            [
                e.group,
                str(e.n),
                f"{_pct(e.rate)} [{_pct(e.low)}, {_pct(e.high)}]",
                _pct(e.expected),
                f"{_signed_pct(e.lift)} [{_signed_pct(e.lift_low)}, {_signed_pct(e.lift_high)}]",
            ]
        )
    return rows


def _srm_line(report: CampaignReport) -> str:
    if report.srm is None:
        return "SRM: not checked"
    s = report.srm
    verdict = "MISMATCH" if s.flagged else "ok"
    expected = ", ".join(f"{a} {_pct(v, 1)}" for a, v in report.expected_shares.items())
    return (
        f"SRM: {verdict} (chi2 = {s.chi2:.2f}, p = {s.p_value:.3g}, expected "
        f"{expected or _pct(report.expected_control_share, 1)}, observed {s.observed})"
    )


def _generation_line(report: CampaignReport) -> str | None:
    """What generation adds: the full loop's lift over the catalog bandit."""
    g = report.generation
    if g is None:
        return None
    return (
        f"what generation adds — full loop vs catalog bandit: rate {_pct(g.treatment.rate)} vs "
        f"{_pct(g.control.rate)}, lift {_signed_pct(g.lift.estimate)} "
        f"({report.confidence:.0%} interval {_signed_pct(g.lift.low)} to "
        f"{_signed_pct(g.lift.high)}), P(full loop beats catalog bandit) = "
        f"{_num(g.prob_treatment_beats_control, 3)}"
    )


def _sequential_lines(report: CampaignReport) -> list[str]:
    out = []
    for arm, comp in report.comparisons.items():
        s = comp.sequential
        out.append(
            f"{arm} − control, always-valid {1 - s.alpha:.0%} interval on the rate difference: "
            f"[{_pct(s.diff_low, 3)}, {_pct(s.diff_high, 3)}] over {s.looks} looks"
        )
    return out


_METHODS = (
    "Rates: Wilson 95% intervals. Lift: delta method on log(rate ratio). P(beats control): "
    "Beta(1, 1) posteriors. Always-valid test: two-sample mixture SPRT (safe to look at any "
    "time). SRM: chi-square of the arm split vs the configured shares, flagged at "
    "p < 0.001. Effects: lift over the average of the segments each creative was shown in."
)


def print_report(report: CampaignReport, console: Console | None = None, limit: int = 20) -> None:
    console = console or Console()
    console.print(
        f"[bold]Campaign {report.campaign_id}[/bold]  decisions from "
        f"{_when(report.from_ms)} to {_when(report.to_ms)}"
    )
    table = Table(*_ARM_HEAD, title="Arms")
    for row in _arm_rows(report):
        table.add_row(*row)
    console.print(table)
    generation = _generation_line(report)
    if generation:
        console.print(generation, style="bold")
    style = "bold red" if report.srm and report.srm.flagged else ""
    console.print(_srm_line(report), style=style)
    for line in _sequential_lines(report):
        console.print(line)
    if report.creatives:
        t = Table("creative", *_EFFECT_HEAD[1:], title="Creatives (lift over segment average)")
        for row in _effect_rows(report.creatives, limit):
            t.add_row(*row)
        console.print(t)
    for name, effects in report.attributes.items():
        t = Table(name, *_EFFECT_HEAD[1:], title=f"Attribute {name}")
        for row in _effect_rows(effects, limit):
            t.add_row(*row)
        console.print(t)
    for note in report.notes:
        console.print(f"note: {note}", style="yellow")


def print_ope(result: OpeResult, console: Console | None = None) -> None:
    console = console or Console()
    s = result.support
    console.print(
        f"[bold]Off-policy evaluation of {result.policy}[/bold] on {result.n} logged rows"
    )
    lv = result.logged_value
    console.print(f"logged policy value: {_num(lv.value)} [{_num(lv.low)}, {_num(lv.high)}]")
    diag = Table(
        "ESS", "ESS share", "unsupported mass", "max weight", "mean weight", title="Support"
    )
    diag.add_row(
        f"{s.ess:.1f}",
        _pct(s.ess_share, 1),
        _pct(s.unsupported_mass, 2),
        _num(s.max_weight),
        _num(s.mean_weight),
    )
    console.print(diag)
    if result.refused:
        console.print("[bold red]refused:[/bold red] the log does not support this policy")
        for r in result.reasons:
            console.print(f"  - {r}", style="red")
        return
    t = Table(
        "estimator",
        "value",
        f"{result.confidence:.0%} interval",
        "std. error",
        title="Estimated value",
    )
    for e in result.estimates.values():
        t.add_row(e.name, _num(e.value), f"[{_num(e.low)}, {_num(e.high)}]", _num(e.se, 3))
    console.print(t)
    for r in result.reasons:
        console.print(f"warning (forced): {r}", style="yellow")


def write_json(path: str | Path, obj: Any) -> None:
    """Write a result (anything with to_dict(), or a dict) as indented JSON."""
    data = obj.to_dict() if hasattr(obj, "to_dict") else obj
    Path(path).write_text(json.dumps(data, indent=2, default=str) + "\n")


def write_html(path: str | Path, page: str) -> None:
    Path(path).write_text(page, encoding="utf-8")


_CSS = (
    "body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:70em;color:#222}"
    "table{border-collapse:collapse;margin:.6em 0 1.4em}"
    "th,td{padding:.25em .7em;border-bottom:1px solid #ddd;text-align:right}"
    "th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}"
    ".bad{color:#b00;font-weight:bold}.note{color:#8a6d00}"
    "caption{text-align:left;font-weight:bold}"
)


def _page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>\n"
    )


def _table(caption: str, head: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    h = "".join(f"<th>{html.escape(c)}</th>" for c in head)
    b = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><caption>{html.escape(caption)}</caption><tr>{h}</tr>{b}</table>"


def _forest(effects: Sequence[GroupEffect], width: int = 560) -> str:
    """Inline SVG: each group's lift with its interval, zero marked."""
    shown = [e for e in effects if all(math.isfinite(v) for v in (e.lift, e.lift_low, e.lift_high))]
    if not shown:
        return ""
    lo = min(min(e.lift_low for e in shown), 0.0)
    hi = max(max(e.lift_high for e in shown), 0.0)
    span = (hi - lo) or 1.0
    left, plot_w, row_h = 180, width - 200, 18

    def x(v: float) -> float:
        return left + (v - lo) / span * plot_w

    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' "
        f"height='{row_h * len(shown) + 24}' font-size='11'>",
        f"<line x1='{x(0):.1f}' y1='0' x2='{x(0):.1f}' y2='{row_h * len(shown)}' "
        "stroke='#999' stroke-dasharray='3'/>",
    ]
    for i, e in enumerate(shown):
        y = i * row_h + row_h / 2
        parts.append(
            f"<text x='0' y='{y + 4:.0f}'>{html.escape(e.group[:28])}</text>"
            f"<line x1='{x(e.lift_low):.1f}' y1='{y}' x2='{x(e.lift_high):.1f}' y2='{y}' "
            f"stroke='#36c' stroke-width='2'/><circle cx='{x(e.lift):.1f}' cy='{y}' r='3'/>"
        )
    parts.append(
        f"<text x='{left}' y='{row_h * len(shown) + 16}'>{_signed_pct(lo)}</text>"
        f"<text x='{left + plot_w - 40}' y='{row_h * len(shown) + 16}'>"
        f"{_signed_pct(hi)}</text></svg>"
    )
    return "".join(parts)


def report_html(report: CampaignReport, limit: int = 50) -> str:
    body = [
        f"<p>Decisions from {_when(report.from_ms)} to {_when(report.to_ms)}; generated "
        f"{_when(report.generated_at_ms)}.</p>",
        _table("Arms", _ARM_HEAD, _arm_rows(report)),
    ]
    generation = _generation_line(report)
    if generation:
        body.append(f"<p><b>{html.escape(generation)}</b></p>")
    cls = "bad" if report.srm and report.srm.flagged else ""
    body.append(f"<p class='{cls}'>{html.escape(_srm_line(report))}</p>")
    body += [f"<p>{html.escape(line)}</p>" for line in _sequential_lines(report)]
    if report.creatives:
        body.append(
            _table(
                "Creatives (lift over segment average)",
                ["creative", *_EFFECT_HEAD[1:]],
                _effect_rows(report.creatives, limit),
            )
        )
        body.append(_forest(report.creatives[:limit]))
    for name, effects in report.attributes.items():
        body.append(
            _table(f"Attribute {name}", [name, *_EFFECT_HEAD[1:]], _effect_rows(effects, limit))
        )
        body.append(_forest(effects[:limit]))
    body += [f"<p class='note'>{html.escape(n)}</p>" for n in report.notes]
    body.append(f"<p><small>{html.escape(_METHODS)}</small></p>")
    return _page(f"admuse report: {report.campaign_id}", "".join(body))


def ope_html(result: OpeResult) -> str:
    s = result.support
    body = [
        f"<p>{result.n} logged rows; logged policy value {_num(result.logged_value.value)} "
        f"[{_num(result.logged_value.low)}, {_num(result.logged_value.high)}].</p>",
        _table(
            "Support",
            ["ESS", "ESS share", "unsupported mass", "max weight"],
            [[f"{s.ess:.1f}", _pct(s.ess_share, 1), _pct(s.unsupported_mass), _num(s.max_weight)]],
        ),
    ]
    if result.refused:
        body.append("<p class='bad'>Refused: the log does not support this policy.</p><ul>")
        body += [f"<li>{html.escape(r)}</li>" for r in result.reasons]
        body.append("</ul>")
    else:
        body.append(
            _table(
                "Estimated value",
                ["estimator", "value", "interval", "std. error"],
                [
                    [e.name, _num(e.value), f"[{_num(e.low)}, {_num(e.high)}]", _num(e.se, 3)]
                    for e in result.estimates.values()
                ],
            )
        )
    return _page(f"admuse ope: {result.policy}", "".join(body))
