"""Creatives as SVG banners (DESIGN.md §2): the API's ``/v1/creatives/{id}.svg`` and the report.

A creative is drawn by one of a few layout templates, picked by the ``template`` argument, else
the creative's ``layout`` or ``template`` attribute, else ``banner``:

- ``banner``: headline and product label on the left, call-to-action button on the right;
- ``centered``: everything stacked in the middle;
- ``split``: an accent panel on the left holding the product label, text on the right;
- ``minimal``: headline only, with an accent underline and a small call-to-action link.

Attributes read (aliases in parentheses; all optional): ``background`` (``background_color``,
``bg``), ``accent`` (``accent_color``), ``text_color``, ``headline``, ``cta``
(``call_to_action``), ``product`` (``product_label``), ``badge``, ``font_scale``.
Colors must be ``#rrggbb``, else a safe default is used; ``font_scale`` is clamped to
[0.5, 2]. Every text is XML-escaped (quotes included), characters XML cannot carry are replaced
by U+FFFD, and long texts are shortened, so the output is always well-formed SVG whatever the
attribute values are.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping

from services.domains.banner_colors import (
    accent_of,
    background_of,
    best_text_color,
    normalize_color,
    text_colors_of,
)

__all__ = ["DEFAULT_TEMPLATE", "TEMPLATES", "render_svg"]

DEFAULT_TEMPLATE = "banner"
_MAX_TEXT = 80
# Characters XML 1.0 forbids (C0 controls except tab/LF/CR, surrogates, U+FFFE/U+FFFF).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_ALIASES = {
    "headline": ("headline", "title"),
    "cta": ("cta", "call_to_action"),
    "product": ("product", "product_label"),
    "badge": ("badge",),
}


def render_svg(
    attributes: Mapping[str, object],
    *,
    template: str | None = None,
    width: int = 600,
    height: int = 200,
) -> str:
    """The creative as a standalone SVG document (a ``<svg>`` element, UTF-8 text)."""
    w = _clamp_int(width, 50, 4000, 600)
    h = _clamp_int(height, 30, 4000, 200)
    name = template or _first_str(attributes, ("layout", "template")) or DEFAULT_TEMPLATE
    draw = TEMPLATES.get(name, TEMPLATES[DEFAULT_TEMPLATE])
    look = _Look(attributes, h)
    body = draw(look, w, h)
    title = look.headline or look.product or "creative"
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        f'viewBox="0 0 {w} {h}" role="img" font-family="Helvetica, Arial, sans-serif">'
        f"<title>{title}</title>"
        f'<rect width="{w}" height="{h}" fill="{look.bg}"/>'
        f"{body}{_badge(look, w)}</svg>"
    )


class _Look:
    """Validated, escaped drawing inputs: every str here is safe to put in SVG text/attrs."""

    def __init__(self, attributes: Mapping[str, object], height: int) -> None:
        self.bg = background_of(attributes)
        self.accent = accent_of(attributes)
        auto = best_text_color(self.bg)
        texts = text_colors_of(attributes)
        self.fg = normalize_color(next(iter(texts.values()), None), auto)
        self.on_accent = best_text_color(self.accent)
        scale = _number(attributes.get("font_scale"), 1.0)
        self.scale = min(2.0, max(0.5, scale))
        self.size = max(8.0, round(height * 0.16 * self.scale, 1))
        self.headline = _text(attributes, "headline")
        self.cta = _text(attributes, "cta")
        self.product = _text(attributes, "product")
        self.badge = _text(attributes, "badge")


def _banner(k: _Look, w: int, h: int) -> str:
    bw, bh = w * 0.26, h * 0.3
    return (
        _label(k.headline, w * 0.05, h * 0.45, k.size, k.fg, weight="bold")
        + _label(k.product, w * 0.05, h * 0.72, k.size * 0.6, k.fg)
        + _button(k, w * 0.69, (h - bh) / 2, bw, bh)
    )


def _centered(k: _Look, w: int, h: int) -> str:
    bw, bh = w * 0.3, h * 0.22
    return (
        _label(k.product, w / 2, h * 0.2, k.size * 0.5, k.fg, anchor="middle")
        + _label(k.headline, w / 2, h * 0.48, k.size, k.fg, anchor="middle", weight="bold")
        + _button(k, (w - bw) / 2, h * 0.62, bw, bh)
    )


def _split(k: _Look, w: int, h: int) -> str:
    pw = w * 0.32
    return (
        f'<rect width="{_f(pw)}" height="{h}" fill="{k.accent}"/>'
        + _label(k.product, pw / 2, h * 0.55, k.size * 0.6, k.on_accent, anchor="middle")
        + _label(k.headline, pw + w * 0.04, h * 0.42, k.size * 0.9, k.fg, weight="bold")
        + _label(k.cta, pw + w * 0.04, h * 0.72, k.size * 0.6, k.fg, weight="bold")
    )


def _minimal(k: _Look, w: int, h: int) -> str:
    return (
        _label(k.headline, w * 0.06, h * 0.5, k.size, k.fg, weight="bold")
        + f'<rect x="{_f(w * 0.06)}" y="{_f(h * 0.6)}" width="{_f(w * 0.2)}" '
        f'height="{_f(max(2.0, h * 0.025))}" fill="{k.accent}"/>'
        + _label(k.cta, w * 0.06, h * 0.82, k.size * 0.5, k.accent)
    )


TEMPLATES: dict[str, Callable[[_Look, int, int], str]] = {
    "banner": _banner,
    "centered": _centered,
    "split": _split,
    "minimal": _minimal,
}


def _button(k: _Look, x: float, y: float, bw: float, bh: float) -> str:
    if not k.cta:
        return ""
    return (
        f'<rect x="{_f(x)}" y="{_f(y)}" width="{_f(bw)}" height="{_f(bh)}" '
        f'rx="{_f(bh / 4)}" fill="{k.accent}"/>'
        + _label(k.cta, x + bw / 2, y + bh * 0.65, min(k.size * 0.6, bh * 0.55), k.on_accent,
                 anchor="middle", weight="bold")
    )  # fmt: skip


def _badge(k: _Look, w: int) -> str:
    if not k.badge:
        return ""
    r = max(12.0, k.size * 0.9)
    cx, cy = w - r - 6, r + 6
    return f'<circle cx="{_f(cx)}" cy="{_f(cy)}" r="{_f(r)}" fill="{k.accent}"/>' + _label(
        k.badge, cx, cy + r * 0.2, r * 0.55, k.on_accent, anchor="middle", weight="bold"
    )


def _label(
    text: str, x: float, y: float, size: float, color: str, *, anchor: str = "start",
    weight: str = "normal",
) -> str:  # fmt: skip
    if not text:
        return ""
    return (
        f'<text x="{_f(x)}" y="{_f(y)}" font-size="{_f(size)}" fill="{color}" '
        f'text-anchor="{anchor}" font-weight="{weight}">{text}</text>'
    )


def _text(attributes: Mapping[str, object], role: str) -> str:
    raw = _first_str(attributes, _ALIASES[role]) or ""
    return _escape(raw)


def _first_str(attributes: Mapping[str, object], names: tuple[str, ...]) -> str | None:
    for name in names:
        value = attributes.get(name)
        if value is not None and not isinstance(value, Mapping | list | tuple | set | bytes):
            return str(value)
    return None


def _escape(text: str) -> str:
    text = _NOT_XML.sub("\ufffd", text)
    if len(text) > _MAX_TEXT:
        text = text[: _MAX_TEXT - 1] + "…"
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&#x27;")
    )


def _number(value: object, default: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return default
    try:
        x = float(value)
    except ValueError:
        return default
    return x if math.isfinite(x) else default


def _clamp_int(value: object, lo: int, hi: int, default: int) -> int:
    x = _number(value, float(default))
    return int(min(hi, max(lo, x)))


def _f(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")
