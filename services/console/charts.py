"""Server-side SVG charts: lines with interval bands, and interval bars. Every label is
escaped; everything else is numbers. No script, no remote asset (the page's CSP allows
neither)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from html import escape

from markupsafe import Markup

from services.console.experiment import Point

__all__ = ["ARM_COLORS", "interval_bars", "line_chart"]

ARM_COLORS = {"control": "#8a8f98", "catalog": "#d9822b", "optimized": "#2a7ae2"}
# Characters XML 1.0 cannot carry: replaced, so a chart is well-formed whatever a label holds.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_OTHER = ("#7b5ea7", "#1b998b", "#c0392b", "#2c3e50")
_W, _H, _L, _R, _T, _B = 640, 240, 48, 110, 12, 28


def _text(value: str) -> str:
    return escape(_NOT_XML.sub("\ufffd", value))


def _color(name: str, i: int) -> str:
    return ARM_COLORS.get(name, _OTHER[i % len(_OTHER)])


def line_chart(series: Mapping[str, Sequence[Point]], title: str) -> Markup:
    """Cumulative rate per series over time, with its interval as a band."""
    pts = [p for ps in series.values() for p in ps]
    head = (
        f'<svg class="chart" role="img" viewBox="0 0 {_W} {_H}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{_text(title)}</title>'
    )
    if not pts:
        return Markup(
            f'{head}<text x="{_W / 2}" y="{_H / 2}" text-anchor="middle" class="muted">'
            "no outcomes yet</text></svg>"
        )
    t0, t1 = min(p.t_ms for p in pts), max(p.t_ms for p in pts)
    finite = [v for p in pts for v in (p.low, p.high) if math.isfinite(v)]
    y1 = max(max(finite, default=0.01), 0.01) * 1.1
    pw, ph = _W - _L - _R, _H - _T - _B

    def x(t: int) -> float:
        return _L + (pw * (t - t0) / (t1 - t0) if t1 > t0 else pw)

    def y(v: float) -> float:
        return _T + ph * (1 - min(max(v, 0.0), y1) / y1)

    out = [head]
    for frac in (0, 0.25, 0.5, 0.75, 1):
        v = y1 * frac
        out.append(
            f'<line x1="{_L}" x2="{_L + pw}" y1="{y(v):.1f}" y2="{y(v):.1f}" class="grid"/>'
            f'<text x="{_L - 4}" y="{y(v) + 4:.1f}" text-anchor="end" class="axis">'
            f"{v:.1%}</text>"
        )
    for t, anchor in ((t0, "start"), (t1, "end")):
        label = datetime.fromtimestamp(t / 1000, UTC).strftime("%H:%M:%S")
        out.append(
            f'<text x="{x(t):.1f}" y="{_H - 8}" text-anchor="{anchor}" class="axis">{label}</text>'
        )
    for i, (name, ps) in enumerate(series.items()):
        if not ps:
            continue
        color = _color(name, i)
        band = [(x(p.t_ms), y(p.high)) for p in ps if math.isfinite(p.high)]
        band += [(x(p.t_ms), y(p.low)) for p in reversed(ps) if math.isfinite(p.low)]
        if len(band) > 2:
            path = " ".join(f"{a:.1f},{b:.1f}" for a, b in band)
            out.append(f'<polygon points="{path}" fill="{color}" fill-opacity="0.15"/>')
        line = " ".join(f"{x(p.t_ms):.1f},{y(p.rate):.1f}" for p in ps)
        out.append(
            f'<polyline points="{line}" fill="none" stroke="{color}" stroke-width="2" '
            f'data-arm="{_text(name)}" data-n="{ps[-1].n}"/>'
        )
        out.append(
            f'<text x="{_L + pw + 6}" y="{y(ps[-1].rate) + 4:.1f}" class="legend" '
            f'fill="{color}">{_text(name)} {ps[-1].rate:.2%}</text>'
        )
    out.append("</svg>")
    return Markup("".join(out))


def interval_bars(rows: Sequence[tuple[str, float, float, float]], title: str) -> Markup:
    """One row per (label, value, low, high), value as a dot and interval as a bar (0-max)."""
    h = 22 * len(rows) + 20
    head = (
        f'<svg class="bars" role="img" viewBox="0 0 {_W} {h}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{_text(title)}</title>'
    )
    highs = [r[3] for r in rows if math.isfinite(r[3])]
    top = max(highs, default=0.01) or 0.01
    lw = 220
    out = [head]
    for i, (label, v, lo, hi) in enumerate(rows):
        yy = 14 + 22 * i
        out.append(f'<text x="0" y="{yy + 4}" class="axis">{_text(label[:36])}</text>')
        if math.isfinite(lo) and math.isfinite(hi):
            x0 = lw + (_W - lw - 60) * lo / top
            x1 = lw + (_W - lw - 60) * hi / top
            out.append(f'<line x1="{x0:.1f}" x2="{x1:.1f}" y1="{yy}" y2="{yy}" class="ci"/>')
        if math.isfinite(v):
            xv = lw + (_W - lw - 60) * v / top
            out.append(f'<circle cx="{xv:.1f}" cy="{yy}" r="4" class="dot"/>')
            out.append(f'<text x="{_W - 4}" y="{yy + 4}" text-anchor="end">{v:.2%}</text>')
    out.append("</svg>")
    return Markup("".join(out))
