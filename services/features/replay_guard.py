"""The join's replay guard: per entry, the offset of the last message of each source applied
to it (``o``), and for stats entries the decisions counted at that offset (``ids``), so a
message processed again after a crash changes nothing (join.py says why)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["applied", "counted", "marked", "with_count"]


def applied(entry: Mapping[str, Any] | None, tag: str, offset: int) -> bool:
    return entry is not None and entry.get("o", {}).get(tag, -1) >= offset


def marked(entry: dict[str, Any], tag: str, offset: int) -> dict[str, Any]:
    return {**entry, "o": {**entry.get("o", {}), tag: offset}}


def counted(entry: Mapping[str, Any] | None, tag: str, offset: int, decision_id: str) -> bool:
    """Whether a stats entry already counts this decision, settled by message `offset`.
    One message (a tick) can settle several decisions of the same stats group."""
    if entry is None:
        return False
    last = entry.get("o", {}).get(tag, -1)
    return last > offset or (last == offset and decision_id in entry.get("ids", {}).get(tag, ()))


def with_count(entry: dict[str, Any], tag: str, offset: int, decision_id: str) -> dict[str, Any]:
    ids = entry.get("ids", {})
    same = entry.get("o", {}).get(tag) == offset
    at_offset = [*ids.get(tag, []), decision_id] if same else [decision_id]
    return {**marked(entry, tag, offset), "ids": {**ids, tag: at_offset}}
