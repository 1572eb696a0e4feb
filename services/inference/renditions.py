"""A creative rendered for people, by its campaign's domain (services/domains): the API's
`GET /v1/creatives/{id}.<fmt>` — `svg` for banners and film storyboards, `wav` / `mid` / `txt`
for music, `txt` for a film's synopsis."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.domains import DomainError, domain_for

__all__ = ["FORMATS", "NoRendition", "rendition"]

FORMATS = ("svg", "wav", "mid", "txt")


class NoRendition(LookupError):
    """`status` is the HTTP status to answer: 404 (no such format for the domain) or 422 (the
    creative's values cannot be rendered)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def rendition(
    creative: Mapping[str, Any],
    campaign: Mapping[str, Any] | None,
    fmt: str,
    view: Mapping[str, Any] | None = None,
) -> tuple[bytes, str]:
    """(body, media type); a creative whose campaign is unknown is drawn as a banner."""
    try:
        domain, _ = domain_for(campaign or {})
    except DomainError as exc:
        raise NoRendition(404, str(exc)) from None
    media = domain.formats.get(fmt)
    if media is None:
        raise NoRendition(
            404, f"{domain.name} creatives render as {sorted(domain.formats)}, not {fmt!r}"
        )
    try:
        return domain.render(fmt, creative.get("attributes") or {}, campaign or {}, view), media
    except ValueError as exc:
        raise NoRendition(422, f"cannot render creative as {fmt}: {exc}") from None
