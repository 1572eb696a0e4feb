"""The canonical segment key: how a context becomes an audience segment (DESIGN.md §2)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = ["ALL_SEGMENTS", "parse_segment", "segment_of"]

ALL_SEGMENTS = "*"


def segment_of(segment_keys: Iterable[str], context: Mapping[str, str]) -> str:
    """'k1=v1|k2=v2' over the campaign's segment keys, sorted; a missing value is '*'.

    A campaign without segment keys has one segment, '*'.
    """
    keys = sorted(segment_keys)
    if not keys:
        return ALL_SEGMENTS
    return "|".join(f"{k}={_clean(context.get(k, '*'))}" for k in keys)


def parse_segment(segment: str) -> dict[str, str]:
    if segment == ALL_SEGMENTS:
        return {}
    return dict(part.split("=", 1) for part in segment.split("|"))


def _clean(value: str) -> str:
    # '|' and '=' separate parts: keep the key parseable whatever the app sent.
    return str(value).replace("|", "/").replace("=", ":")
