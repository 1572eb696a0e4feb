"""Colors of a creative: `#rrggbb` parsing, WCAG 2.x contrast, and which attribute is which.

The admission gate and the SVG renderer share these rules, so a creative is judged by the
colors it will actually be drawn with:

- a **background** color is a color attribute named ``background``, ``background_color``,
  ``bg`` or ``bg_color`` (first present wins); without one the banner is white;
- a **text** color is any color attribute named ``text_color``, ``text``, ``foreground``,
  ``fg``, ``headline_color`` or ending in ``_text_color``; without one the renderer picks black
  or white, whichever contrasts more with the background (always at least 4.58:1);
- an **accent** color is ``accent`` or ``accent_color``; it fills the call-to-action button,
  whose label is drawn in black or white for contrast, so accents are not contrast-checked.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = [
    "ACCENT_NAMES",
    "BACKGROUND_NAMES",
    "DEFAULT_ACCENT",
    "DEFAULT_BACKGROUND",
    "TEXT_COLOR_NAMES",
    "accent_of",
    "background_of",
    "best_text_color",
    "contrast_ratio",
    "is_hex_color",
    "normalize_color",
    "parse_hex",
    "relative_luminance",
    "text_colors_of",
]

BACKGROUND_NAMES = ("background", "background_color", "bg", "bg_color")
TEXT_COLOR_NAMES = ("text_color", "text", "foreground", "fg", "headline_color")
ACCENT_NAMES = ("accent", "accent_color")
DEFAULT_BACKGROUND = "#ffffff"
DEFAULT_ACCENT = "#1a56db"

_HEX = re.compile(r"#[0-9a-fA-F]{6}")


def is_hex_color(value: object) -> bool:
    """True for a string of the exact form ``#rrggbb`` (either case)."""
    return isinstance(value, str) and _HEX.fullmatch(value) is not None


def normalize_color(value: object, default: str) -> str:
    """``value`` lower-cased when it is a valid ``#rrggbb``, else ``default``."""
    return value.lower() if is_hex_color(value) else default  # type: ignore[union-attr]


def parse_hex(color: str) -> tuple[float, float, float]:
    """``#rrggbb`` → (r, g, b) in [0, 1]. Raises ValueError naming the bad value."""
    if not is_hex_color(color):
        raise ValueError(f"color {color!r} is not of the form #rrggbb")
    return tuple(int(color[i : i + 2], 16) / 255.0 for i in (1, 3, 5))  # type: ignore[return-value]


def relative_luminance(color: str) -> float:
    """WCAG 2.x relative luminance of an sRGB ``#rrggbb`` color, in [0, 1]."""

    def channel(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in parse_hex(color))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(fg: str, bg: str) -> float:
    """WCAG 2.x contrast ratio (L1 + 0.05) / (L2 + 0.05), from 1 (none) to 21 (black/white).

    Symmetric in its arguments. Raises ValueError for a color that is not ``#rrggbb``.
    """
    a, b = relative_luminance(fg), relative_luminance(bg)
    hi, lo = max(a, b), min(a, b)
    return (hi + 0.05) / (lo + 0.05)


def best_text_color(bg: str) -> str:
    """Black or white, whichever contrasts more with ``bg`` (at least 4.58:1 either way)."""
    black, white = "#000000", "#ffffff"
    return black if contrast_ratio(black, bg) >= contrast_ratio(white, bg) else white


def background_of(attributes: Mapping[str, object]) -> str:
    """The background the creative is drawn on (a valid color; white when absent or bad)."""
    for name in BACKGROUND_NAMES:
        if name in attributes:
            return normalize_color(attributes[name], DEFAULT_BACKGROUND)
    return DEFAULT_BACKGROUND


def accent_of(attributes: Mapping[str, object]) -> str:
    """The accent (call-to-action button) color; a default blue when absent or bad."""
    for name in ACCENT_NAMES:
        if name in attributes:
            return normalize_color(attributes[name], DEFAULT_ACCENT)
    return DEFAULT_ACCENT


def text_colors_of(attributes: Mapping[str, object]) -> dict[str, object]:
    """The text-color attributes present in ``attributes``, by name (values unvalidated)."""
    return {
        name: value
        for name, value in attributes.items()
        if name in TEXT_COLOR_NAMES or name.endswith("_text_color")
    }
