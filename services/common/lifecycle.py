"""A campaign's lifecycle (`Campaign` v4 `state`): the one definition of its states and moves.

States: `active` (serves and learns), `paused` (a break: Decide answers the campaign's fallback
creative, or none, with status `paused`; nothing is logged as a decision, no creative is
generated or judged, the trainer does not retrain it) and `stopped` (the campaign is over:
the same answers with status `stopped`, and no way back — apply the spec under a new
campaign_id to run it again). Moves: pause (active → paused), resume (paused → active), stop
(active or paused → stopped). Asking for the state a campaign is already in changes nothing
(so a retried click in the console or a re-run script is harmless); a move the rules forbid
raises `LifecycleError` with a stable `reason` and a message that says what to do.

`admuse campaign apply` keeps the state (a paused campaign stays paused when its spec
changes). Every writer goes through `services.common.campaign_ops`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

__all__ = [
    "ACTIONS",
    "ACTIVE",
    "PAUSED",
    "STATES",
    "STOPPED",
    "Action",
    "LifecycleError",
    "campaign_state",
    "is_serving",
    "next_state",
]

ACTIVE, PAUSED, STOPPED = "active", "paused", "stopped"
STATES = (ACTIVE, PAUSED, STOPPED)
Action = Literal["pause", "resume", "stop"]
ACTIONS: dict[str, str] = {"pause": PAUSED, "resume": ACTIVE, "stop": STOPPED}


class LifecycleError(ValueError):
    """A move the lifecycle forbids, or an unknown campaign. `reason` is a stable code:
    `unknown_campaign`, `unknown_action`, `stopped`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def campaign_state(campaign: Mapping[str, Any]) -> str:
    """The state of a decoded Campaign record (older versions decode as `active`)."""
    state = campaign.get("state") or ACTIVE
    return state if state in STATES else PAUSED  # what the schema's enum default says


def is_serving(campaign: Mapping[str, Any]) -> bool:
    """Whether the campaign's Decide runs the experiment (only an active campaign does)."""
    return campaign_state(campaign) == ACTIVE


def next_state(campaign_id: str, current: str, action: str) -> str:
    """The state after `action`; the current one when it is already there."""
    target = ACTIONS.get(action)
    if target is None:
        raise LifecycleError(
            "unknown_action", f"unknown action {action!r}; one of {', '.join(ACTIONS)}"
        )
    if current == target:
        return current
    if current == STOPPED:
        raise LifecycleError(
            "stopped",
            f"campaign {campaign_id!r} is stopped, and stopping is final; to run it again, "
            "apply its spec under a new campaign_id",
        )
    return target
