"""The Decide operation: request checks, the `Inference` parts and the one `decide` both front
ends (HTTP `http_api.py`, gRPC `grpc_api.py`) call, so they have the same semantics and never
import each other. `app.py` builds an `Inference` and runs the servers.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from services.common.privacy import ApiKeys, Pseudonymizer
from services.common.segment import segment_of
from services.inference.curator import Curator
from services.inference.decisions import DecisionLog, NotLogged
from services.inference.gate import Gate
from services.inference.metrics import Metrics
from services.inference.policy import NoCreatives, Policy, UnknownCampaign
from services.inference.settings import Settings
from services.inference.state import State, StateFollower

__all__ = [
    "MAX_CONTEXT",
    "MAX_CONTEXT_KEY",
    "MAX_CONTEXT_VALUE",
    "MAX_ID",
    "MAX_USER_ID",
    "BadRequest",
    "Inference",
    "NoCreatives",
    "NotReady",
    "UnknownCampaign",
    "validate_request",
]

MAX_ID = 128
MAX_USER_ID = 256
MAX_CONTEXT = 32
MAX_CONTEXT_KEY = 64
MAX_CONTEXT_VALUE = 256


class BadRequest(ValueError):
    """A request field is missing or malformed; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class NotReady(RuntimeError):
    def __init__(self, message: str = "") -> None:
        super().__init__(
            message or "inference is still restoring its state from Kafka; retry shortly"
        )


def validate_request(campaign_id: str, user_id: str, context: Mapping[str, str]) -> None:
    """The checks the HTTP schema makes, for callers without one (gRPC)."""
    if not campaign_id:
        raise BadRequest("campaign_id", "is required and must not be empty")
    if len(campaign_id) > MAX_ID:
        raise BadRequest("campaign_id", f"is {len(campaign_id)} characters, at most {MAX_ID}")
    if not user_id:
        raise BadRequest("user_id", "is required and must not be empty")
    if len(user_id) > MAX_USER_ID:
        raise BadRequest("user_id", f"is {len(user_id)} characters, at most {MAX_USER_ID}")
    if len(context) > MAX_CONTEXT:
        raise BadRequest("context", f"has {len(context)} fields, at most {MAX_CONTEXT}")
    for key, value in context.items():
        if not key or len(key) > MAX_CONTEXT_KEY:
            raise BadRequest("context", f"key {key[:80]!r} must have 1..{MAX_CONTEXT_KEY} chars")
        if len(value) > MAX_CONTEXT_VALUE:
            raise BadRequest(f"context.{key}", f"is longer than {MAX_CONTEXT_VALUE} characters")


@dataclass
class Inference:
    """The running service's parts; `decide` is the Decide operation of both APIs."""

    settings: Settings
    state: State
    policy: Policy
    curator: Curator
    log: DecisionLog
    metrics: Metrics
    follower: StateFollower | None = None
    ready: bool = False
    ready_event: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._keys = ApiKeys(self.settings.api_key_set())
        self._pseudonym = Pseudonymizer(self.settings.pseudonym_key())
        self.gate = Gate(self.state, self.metrics.registry)

    def key_ok(self, key: str | None) -> bool:
        return self._keys.matches(key)

    async def decide(
        self, campaign_id: str, user_id: str, context: Mapping[str, str], *, api: str = "http"
    ) -> dict[str, Any]:
        """Choose a creative, log the Decision, return the response body (contracts.md).

        With `decision_ack`, answers only once Kafka acknowledged the Decision record; past
        `decision_ack_timeout_ms` raises NotReady (503 / UNAVAILABLE) and the record, still
        queued or spooled, may yet be written: an unanswered Decide may have a record, an
        answered one always has exactly one."""
        started = time.perf_counter()
        if not self.ready:
            raise NotReady()
        campaign = self.state.campaigns.get(campaign_id)
        if campaign is None:
            raise UnknownCampaign(campaign_id)
        segment = segment_of(campaign["segment_keys"], context)
        held = self.gate.answer(campaign, segment, api)  # paused or stopped: no decision
        if held is not None:
            return held
        pseudonym = self._pseudonym(user_id)
        choice = self.policy.choose(campaign, segment, pseudonym)
        decision_id = uuid.uuid4().hex
        model_version = self.curator.model_version(campaign_id)
        creative = choice.creative
        acked = self.log.submit(
            {
                "decision_id": decision_id,
                "decided_at": int(time.time() * 1000),
                "campaign_id": campaign_id,
                "segment": segment,
                "context": dict(context),
                "user_id": "",  # no user identity in the 30-day decision log (erasure)
                "creative_id": creative["creative_id"],
                "propensity": choice.propensity,
                "arm": choice.arm,
                "policy": choice.policy,
                "policy_version": choice.policy_version,
                "model_version": model_version,
                "attribution_window_ms": int(campaign["attribution_window_ms"]),
                "candidates": choice.candidates,
            },
            acked=self.settings.decision_ack,
        )
        if acked is not None:
            try:
                await asyncio.wait_for(acked, self.settings.decision_ack_timeout_ms / 1000)
            except (TimeoutError, NotLogged):
                self.metrics.decisions_unacknowledged.inc()
                raise NotReady("the decision could not be logged to Kafka in time; retry") from None
        self.metrics.decisions.labels(choice.arm, api).inc()
        self.metrics.latency.labels(api).observe(time.perf_counter() - started)
        return {
            "status": "active",
            "decision_id": decision_id,
            "campaign_id": campaign_id,
            "creative_id": creative["creative_id"],
            "propensity": choice.propensity,
            "arm": choice.arm,
            "policy": choice.policy,
            "policy_version": choice.policy_version,
            "model_version": model_version,
            "segment": segment,
            "render_url": f"/v1/creatives/{creative['creative_id']}.svg",
            "attributes": dict(creative["attributes"]),
        }
