"""The lifecycle gate Decide consults before the policy (docs/contracts.md "Paused and stopped
campaigns"), and the pins the policy honours.

A campaign that is not `active` (services/common/lifecycle.py) does not run the experiment:
Decide answers 200 / OK with `status` `paused` or `stopped`, the campaign's fallback creative
when it has one that may serve (live, catalog; else no creative), and no `decision_id` — no
Decision is logged, so the experiment, the rewards and the reports hold only decisions the
policy made, and an app sends no events for such an answer (there is nothing to attribute
them to). Each answer is counted in `admuse_inference_held_answers_total{campaign_id, status,
api, creative}` (`creative`: `fallback` or `none`), so a paused campaign's traffic stays
visible. An app that ignores `status` still gets a well-formed answer, never an error storm.

Pins (services/common/review.py): `pinned` lists the live creatives pinned for a segment; the
policy serves them, uniformly, to the optimized arm (policy `pinned`, propensity 1/k).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter

from services.common.lifecycle import ACTIVE, campaign_state
from services.common.review import pin_applies
from services.inference.state import State

__all__ = ["Gate", "Pins", "pinned"]


class Gate:
    """Answers Decide for campaigns that are not active; None lets the policy decide."""

    def __init__(self, state: State, registry: CollectorRegistry) -> None:
        self._state = state
        self.held = Counter(
            "admuse_inference_held_answers",
            "Decide answers of campaigns that are not active (paused, stopped): the fallback "
            "creative or none, no decision logged",
            ["campaign_id", "status", "api", "creative"],
            registry=registry,
        )

    def answer(self, campaign: dict[str, Any], segment: str, api: str) -> dict[str, Any] | None:
        status = campaign_state(campaign)
        if status == ACTIVE:
            return None
        campaign_id = campaign["campaign_id"]
        fallback = self._fallback(campaign, segment)
        self.held.labels(campaign_id, status, api, "fallback" if fallback else "none").inc()
        what = (
            f"serving its fallback creative {fallback['creative_id']!r}"
            if fallback
            else "it has no fallback creative to serve"
        )
        return {
            "status": status,
            "decision_id": None,
            "campaign_id": campaign_id,
            "creative_id": fallback["creative_id"] if fallback else None,
            "segment": segment,
            "render_url": f"/v1/creatives/{fallback['creative_id']}.svg" if fallback else None,
            "attributes": dict(fallback["attributes"]) if fallback else {},
            "message": f"campaign {campaign_id!r} is {status}: {what}; no decision is logged",
        }

    def _fallback(self, campaign: dict[str, Any], segment: str) -> dict[str, Any] | None:
        """The fallback creative if it may serve the segment: live and made by people."""
        fid = campaign.get("fallback_creative_id")
        creative = self._state.live.get(campaign["campaign_id"], {}).get(fid) if fid else None
        if creative is None or creative["origin"] != "catalog":
            return None
        return creative if creative.get("segment") in (None, segment) else None


def pinned(state: State, campaign_id: str, segment: str) -> list[dict[str, Any]]:
    """The live creatives pinned for `segment` (services/common/review.py), in id order."""
    live = state.live.get(campaign_id, {})
    return sorted(
        (c for c in live.values() if pin_applies(c, segment)), key=lambda c: c["creative_id"]
    )


class Pins:
    """`pinned` for the request path, cached per campaign × segment until the campaign's
    creatives change (`State.structure_version`, bumped by every creative record)."""

    def __init__(self, state: State) -> None:
        self._state = state
        self._cache: dict[tuple[str, str], tuple[int, list[dict[str, Any]]]] = {}

    def __call__(self, campaign_id: str, segment: str) -> list[dict[str, Any]]:
        version = self._state.structure_version.get(campaign_id, 0)
        hit = self._cache.get((campaign_id, segment))
        if hit is not None and hit[0] == version:
            return hit[1]
        found = pinned(self._state, campaign_id, segment)
        self._cache[(campaign_id, segment)] = (version, found)
        return found
