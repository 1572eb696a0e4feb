"""What a person may do to a creative (`Creative` v3): the one definition of the review rules.

Statuses: `pending` (a generated creative of a campaign with `approval: required`: waits in
the review queue and is never served), `live`, `retired` (no longer served; by a person or
the optimizer) and `blocked` (a person blocked it: never served again — no action, no apply
and no generator makes it live again; the generator will not propose its design again since
its id is the hash of it).

Actions, each by a person (`reviewed_by`):
- approve: pending → live (a challenger, its clock starting at `approved_at`);
- block: pending, live or retired → blocked (pin cleared);
- retire: pending or live → retired (pin cleared); a catalog creative comes back live if
  its spec is applied again while it still lists it — remove it from the spec, or block it;
- pin [segment]: a live creative is served to every optimized-arm request of the scope
  (`pinned`: the segment, or `*` for every segment the creative may serve; a creative made
  for one segment can be pinned only there); several pinned creatives of a scope share it
  uniformly; the experiment's control and catalog arms keep their own policies;
- unpin: clears the pin.

Asking for what is already so changes nothing (no record is written); a forbidden action
raises `ReviewError` with a stable `reason` and a message that says what to do.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from services.common.segment import ALL_SEGMENTS, parse_segment, segment_of

__all__ = [
    "BLOCKED",
    "LIVE",
    "PENDING",
    "RETIRED",
    "REVIEW_ACTIONS",
    "ReviewError",
    "awaiting_review",
    "check_segment",
    "is_blocked",
    "needs_approval",
    "pin_applies",
    "reviewed",
]

PENDING, LIVE, RETIRED, BLOCKED = "pending", "live", "retired", "blocked"
REVIEW_ACTIONS = ("approve", "block", "retire", "pin", "unpin")


class ReviewError(ValueError):
    """An action the rules forbid. `reason`: `unknown_creative`, `unknown_action`,
    `not_pending`, `not_live`, `blocked`, `bad_segment`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def needs_approval(campaign: Mapping[str, Any]) -> bool:
    """Whether the campaign's generated creatives enter as `pending` (Campaign v4 `approval`;
    a mode a reader does not know reads as `required`)."""
    return campaign.get("approval", "auto") != "auto"


def is_blocked(creative: Mapping[str, Any] | None) -> bool:
    return creative is not None and creative.get("status") == BLOCKED


def awaiting_review(creatives: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The review queue: pending creatives, oldest first."""
    queue = [c for c in creatives if c.get("status") == PENDING]
    return sorted(queue, key=lambda c: (str(c.get("created_at")), c["creative_id"]))


def pin_applies(creative: Mapping[str, Any], segment: str) -> bool:
    """Whether a live creative's pin holds for a request in `segment`."""
    pin = creative.get("pinned")
    if not pin or creative.get("status") != LIVE:
        return False
    return creative.get("segment") in (None, segment) and pin in (ALL_SEGMENTS, segment)


def reviewed(
    creative: Mapping[str, Any],
    action: str,
    *,
    by: str,
    now: datetime,
    segment: str | None = None,
    segment_keys: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The record after `action`; equal to `creative` when nothing changes. A pin's `segment`
    is checked against the campaign's `segment_keys` when given (a pin no request can match
    would fail silently)."""
    cid, status = creative["creative_id"], creative["status"]
    out = dict(creative)
    if action not in REVIEW_ACTIONS:
        raise ReviewError(
            "unknown_action", f"unknown action {action!r}; one of {', '.join(REVIEW_ACTIONS)}"
        )
    if status == BLOCKED:
        if action in ("block", "retire", "unpin"):
            return out  # already out for good
        raise ReviewError("blocked", f"creative {cid!r} is blocked, and blocking is final")
    if action == "approve":
        if status == LIVE:
            return out
        if status != PENDING:
            raise ReviewError("not_pending", f"creative {cid!r} is {status}, not pending approval")
        out.update(status=LIVE, approved_at=now)
    elif action in ("block", "retire"):
        target = BLOCKED if action == "block" else RETIRED
        if status == target:
            return out
        out.update(status=target, pinned=None)
        if status != RETIRED or out.get("retired_at") is None:
            out["retired_at"] = now  # when it stopped serving
    elif action == "unpin":
        if not creative.get("pinned"):
            return out
        out["pinned"] = None
    else:
        if status != LIVE:
            hint = "; approve it first" if status == PENDING else ""
            raise ReviewError(
                "not_live", f"creative {cid!r} is {status}: only a live one can be pinned{hint}"
            )
        if segment is not None and segment_keys is not None:
            check_segment(segment, segment_keys)
        scope = _pin_scope(creative, segment)
        if creative.get("pinned") == scope:
            return out
        out["pinned"] = scope
    out["reviewed_by"] = by
    return out


def check_segment(segment: str, segment_keys: Sequence[str]) -> str:
    """`segment` if it is `*` or a segment requests of the campaign can have (the canonical
    form `services.common.segment.segment_of` gives); else ReviewError `bad_segment`."""
    if segment == ALL_SEGMENTS:
        return segment
    problem = None
    if len(segment) > 1024 or any(unicodedata.category(ch) == "Cc" for ch in segment):
        problem = "is too long or holds control characters"
    else:
        try:
            parts = parse_segment(segment)
        except ValueError:
            parts = None
        if parts is None or segment_of(segment_keys, parts) != segment:
            problem = "is not a segment of this campaign"
    if problem:
        example = segment_of(segment_keys, {k: "…" for k in segment_keys})
        raise ReviewError(
            "bad_segment",
            f"segment {segment[:200]!r} {problem}: its segments look like {example!r} "
            "(keys sorted, '*' for a value a request lacks), or use '*' for all",
        )
    return segment


def _pin_scope(creative: Mapping[str, Any], segment: str | None) -> str:
    own = creative.get("segment")
    scope = segment or own or ALL_SEGMENTS
    if own is not None and scope != own:
        raise ReviewError(
            "bad_segment",
            f"creative {creative['creative_id']!r} serves only segment {own!r}; it can be "
            f"pinned there, not for {scope!r}",
        )
    return scope
