"""Banners: the original domain — SVG ad banners judged by clicks and conversions.

Its one admission rule is the text contrast (WCAG ratio of every text color on the
background, at least the campaign's `min_contrast`, reason `low_contrast`); its renderer the
four SVG templates of `banner_render`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel

from services.domains.banner_colors import (
    background_of,
    best_text_color,
    contrast_ratio,
    is_hex_color,
    text_colors_of,
)
from services.domains.banner_render import render_svg
from services.domains.base import Domain, Feedback, Rule

__all__ = ["BannerDomain", "contrast_failure"]


class BannerDomain(Domain):
    name = "banner"
    meanings: ClassVar[Mapping[str, str]] = {
        "layout": "template: banner, centered, split or minimal (also `template`)",
        "background": "background color #rrggbb (also background_color, bg)",
        "text_color": "text color; without one, black or white, whichever reads better",
        "accent": "accent color (also accent_color)",
        "headline": "the headline text",
        "cta": "the call-to-action text (also call_to_action)",
        "product": "product label (also product_label)",
        "badge": "a small badge text",
        "font_scale": "text size factor, clamped to [0.5, 2]",
    }
    formats: ClassVar[Mapping[str, str]] = {"svg": "image/svg+xml"}
    feedback: ClassVar[Mapping[str, Feedback]] = {
        "impression": Feedback("the banner was shown"),
        "click": Feedback("the user clicked the banner", default_weight=1.0),
        "conversion": Feedback("the user converted after the click"),
    }

    def rules(self, options: BaseModel, campaign: Mapping[str, Any]) -> list[Rule]:
        raw = campaign.get("min_contrast")
        minimum = 4.5 if raw is None else float(raw)
        return [Rule("contrast", lambda a: contrast_failure(a, minimum), reason="low_contrast")]

    def render(
        self,
        fmt: str,
        attributes: Mapping[str, object],
        campaign: Mapping[str, Any],
        view: Mapping[str, Any] | None = None,
    ) -> bytes:
        v = view or {}
        size = {k: int(v[k]) for k in ("width", "height") if v.get(k) is not None}
        return render_svg(attributes, template=v.get("template"), **size).encode()


def contrast_failure(attrs: Mapping[str, object], min_contrast: float) -> str | None:
    """The first text color below `min_contrast` on the background, said with its ratio."""
    bg = background_of(attrs)
    texts = text_colors_of(attrs) or {"(auto text)": best_text_color(bg)}
    for name, color in texts.items():
        if not is_hex_color(color):
            continue  # not a declared color attribute: the renderer ignores it
        ratio = contrast_ratio(str(color), bg)
        if ratio < min_contrast:
            return f"{name} {color} on {bg}: {ratio:.2f} < {min_contrast}"
    return None
