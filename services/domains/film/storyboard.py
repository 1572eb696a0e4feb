"""A film creative as a storyboard card (SVG): one panel per beat with its caption, the
protagonist's traits in a header, the tone as the card's palette, the ending in the footer.

Every text is escaped for XML (quotes included), characters XML cannot carry become U+FFFD,
long texts are cut, so the card is well-formed whatever the campaign or creative holds.
"""

from __future__ import annotations

import hashlib
import html
import re
import textwrap

from services.domains.film.story import Story

__all__ = ["PALETTES", "palette", "storyboard_svg"]

# tone → (background, panel, ink, accent)
PALETTES = {
    "dark": ("#14161c", "#262a36", "#e8e8f0", "#c0392b"),
    "warm": ("#fff4e6", "#ffe0b8", "#3b2414", "#d35400"),
    "comic": ("#fffbe0", "#ffffff", "#1b1b1b", "#ff3d7f"),
    "tense": ("#1d2b2f", "#2f4a50", "#f0f4f4", "#f1c40f"),
    "hopeful": ("#eef8ff", "#ffffff", "#123047", "#2e86de"),
}
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_PANEL_W, _PANEL_H, _GAP, _HEAD, _FOOT = 180, 120, 12, 56, 40


def palette(tone: str) -> tuple[str, str, str, str]:
    """The tone's palette; an unknown tone gets a stable one of the known palettes."""
    if tone in PALETTES:
        return PALETTES[tone]
    pick = hashlib.sha256(tone.encode("utf-8", "replace")).digest()[0] % len(PALETTES)
    return list(PALETTES.values())[pick]


def _esc(text: str, limit: int) -> str:
    text = _NOT_XML.sub("\ufffd", text)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return html.escape(text, quote=True)


def storyboard_svg(story: Story, title: str = "") -> str:
    bg, panel, ink, accent = palette(story.tone)
    n = max(1, len(story.captions))
    width = _GAP + n * (_PANEL_W + _GAP)
    height = _HEAD + _PANEL_H + _FOOT
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img">',
        f'<rect width="{width}" height="{height}" fill="{bg}"/>',
        f'<text x="{_GAP}" y="22" font-size="16" font-weight="bold" fill="{accent}">'
        f"{_esc(title or 'Storyboard', 80)}</text>",
        f'<text x="{_GAP}" y="42" font-size="12" fill="{ink}">'
        f"{_esc('Protagonist: ' + (', '.join(story.traits) or '—'), 120)}</text>",
    ]
    for i, caption in enumerate(story.captions):
        x = _GAP + i * (_PANEL_W + _GAP)
        out.append(
            f'<rect x="{x}" y="{_HEAD}" width="{_PANEL_W}" height="{_PANEL_H}" rx="6" '
            f'fill="{panel}" stroke="{accent}" stroke-width="2"/>'
        )
        out.append(
            f'<text x="{x + 8}" y="{_HEAD + 18}" font-size="12" font-weight="bold" '
            f'fill="{accent}">{i + 1}</text>'
        )
        for j, line in enumerate(textwrap.wrap(caption, 26)[:5]):
            out.append(
                f'<text x="{x + 8}" y="{_HEAD + 38 + 16 * j}" font-size="11" fill="{ink}">'
                f"{_esc(line, 40)}</text>"
            )
    footer = f"Tone: {story.tone or '—'} · Ending: {story.ending or '—'}"
    out.append(
        f'<text x="{_GAP}" y="{height - 14}" font-size="12" fill="{ink}">{_esc(footer, 120)}</text>'
    )
    out.append("</svg>")
    return "\n".join(out)
