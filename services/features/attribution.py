"""The attribution join for one decision: a small state machine over plain, JSON-able dicts.

A decision opens a *pending* join that lasts until ``decided_at + attribution window``. Events
carrying its ``decision_id`` are attributed while it is pending; the first one that settles the
campaign's reward (a click for ``click``, a conversion for ``conversion`` and ``weighted``)
emits the positive Reward at once. A window that closes without one emits the Reward it has
(0 for ``click``/``conversion``) with outcome ``timeout``. After that the join is *done*: it
is kept for a while so that duplicates are recognised and late events are counted, then
dropped. Events that arrive before their decision are *held* and replayed when it arrives.

States are dicts (faust tables store JSON); every function returns new dicts and never
mutates its input, so the caller decides what gets written back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from services.common.watermark import clock_of
from services.domains import get_domain

__all__ = [
    "JOIN_TYPES",
    "MAX_HELD",
    "MAX_SEEN",
    "RewardRule",
    "Step",
    "apply_event",
    "close_due",
    "event_of",
    "hold_event",
    "open_decision",
    "to_ms",
]

# the creative domains' feedback events (AdEvent v3; services/domains): kept per decision and
# turned into a reward by the campaign's domain when its reward kind is 'events'
FEEDBACK_TYPES = frozenset(
    {"play", "listen_through", "skip", "like", "replay", "vote", "watch_through", "drop_off"}
)
JOIN_TYPES = frozenset({"impression", "click", "conversion", "comment"}) | FEEDBACK_TYPES
IMPRESSION_SOURCES = ("decision", "event")
MAX_SEEN = 64  # event ids remembered per decision for de-duplication
MAX_HELD = 100  # events held per not-yet-seen decision


def to_ms(value: datetime | int | float | None) -> int | None:
    """Epoch milliseconds of a decoded Avro timestamp (aware datetime) or a number."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return round(value.timestamp() * 1000)
    return int(value)


@dataclass(frozen=True)
class RewardRule:
    """How events become a reward (the campaign's ``RewardRule``)."""

    kind: str = "click"
    click_weight: float = 1.0
    conversion_weight: float = 0.0
    value_weight: float = 0.0
    sentiment_weight: float = 0.0
    impressions: str = "decision"  # what makes a decision an impression (IMPRESSION_SOURCES)
    domain: str = "banner"  # kind 'events': whose feedback mapping (services/domains)
    event_weights: tuple[tuple[str, float], ...] = ()

    @classmethod
    def from_campaign(cls, campaign: Mapping[str, Any]) -> RewardRule:
        spec = campaign.get("reward") or {}
        kind = spec.get("kind", "click")
        if kind not in ("click", "conversion", "weighted", "events"):
            raise ValueError(
                f"campaign {campaign.get('campaign_id')!r} has reward kind {kind!r}; "
                "expected 'click', 'conversion', 'weighted' or 'events'"
            )
        domain = str(campaign.get("domain") or "banner")
        if kind == "events":
            get_domain(domain)  # DomainError (a ValueError) names an unknown one
        impressions = campaign.get("impressions") or "decision"
        if impressions not in IMPRESSION_SOURCES:
            raise ValueError(
                f"campaign {campaign.get('campaign_id')!r} has impressions {impressions!r}; "
                "expected 'decision' or 'event'"
            )
        return cls(
            kind=kind,
            click_weight=float(spec.get("click_weight", 1.0)),
            conversion_weight=float(spec.get("conversion_weight", 0.0)),
            value_weight=float(spec.get("value_weight", 0.0)),
            sentiment_weight=float(spec.get("sentiment_weight", 0.0)),
            impressions=impressions,
            domain=domain,
            event_weights=tuple(sorted((spec.get("event_weights") or {}).items())),
        )

    def value(self, state: Mapping[str, Any]) -> float:
        """The reward a join's accumulated outcome is worth."""
        if self.kind == "click":
            return 1.0 if state["clicked"] else 0.0
        if self.kind == "conversion":
            return 1.0 if state["converted"] else 0.0
        if self.kind == "events":
            fb = [(t, v) for t, v in state.get("fb", [])]
            return get_domain(self.domain).reward(fb, dict(self.event_weights))
        sentiment = _mean_sentiment(state) or 0.0
        return (
            self.click_weight * state["clicked"]
            + self.conversion_weight * state["converted"]
            + self.value_weight * state["value"]
            + self.sentiment_weight * sentiment
        )

    def shown(self, state: Mapping[str, Any]) -> bool:
        """Whether the decision counts as an impression: always when the campaign counts
        decisions; else once the app reported it shown (an impression, or any reaction)."""
        if self.impressions == "decision":
            return True
        return bool(state.get("shown") or state["clicked"] or state["converted"])

    def settles(self, event_type: str) -> bool:
        """Whether an attributed event of this type emits the reward at once (never for
        kind 'events': a listen-through or a replay may follow, so the window closes it)."""
        if self.kind == "events":
            return False
        if self.kind == "click":
            return event_type == "click"
        if self.kind == "conversion":
            return event_type == "conversion"
        if event_type == "conversion":
            return True
        only_clicks = not (self.conversion_weight or self.value_weight or self.sentiment_weight)
        return event_type == "click" and only_clicks


class Step(NamedTuple):
    """What one input did: the new state (None: delete it), a Reward to emit, a verdict."""

    state: dict[str, Any] | None
    reward: dict[str, Any] | None
    verdict: str  # opened | attributed | settled | duplicate | late | ignored | held | closed


def event_of(event: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a decoded AdEvent the join keeps."""
    return {
        "event_id": event["event_id"],
        "type": event["type"],
        "occurred_at": to_ms(event["occurred_at"]),
        "value": event.get("value"),
        "sentiment": event.get("sentiment"),
    }


def open_decision(
    decision: Mapping[str, Any],
    held: Mapping[str, Any] | None,
    spec: RewardRule,
    *,
    partition: int,
    now_ms: int,
    default_window_ms: int,
    retention_ms: int,
    stamp_ms: int | None = None,
) -> tuple[dict[str, Any], dict[str, Any] | None, list[str]]:
    """Start the join for a decision and replay any events held for it.

    Returns the state, the Reward the held events settled (if any; stamped as in
    `apply_event`) and one verdict per held event.
    """
    decided_at = to_ms(decision["decided_at"])
    window = int(decision.get("attribution_window_ms") or 0) or default_window_ms
    state: dict[str, Any] = {
        "k": "d",
        "p": partition,
        "user_id": decision["user_id"],
        "dec": {
            "decision_id": decision["decision_id"],
            "decided_at": decided_at,
            "campaign_id": decision["campaign_id"],
            "segment": decision["segment"],
            "context": dict(decision.get("context") or {}),
            "creative_id": decision["creative_id"],
            "propensity": float(decision["propensity"]),
            "arm": decision["arm"],
            "policy": decision["policy"],
            "policy_version": decision["policy_version"],
            "model_version": decision.get("model_version"),
        },
        "deadline": decided_at + window,
        "clock": clock_of(str(decision["policy"]), str(decision["policy_version"])),
        "status": "pending",
        "shown": False,
        "clicked": False,
        "converted": False,
        "value": 0.0,
        "sentiment_sum": 0.0,
        "sentiment_n": 0,
        "fb": [],  # [type, value] of the domain feedback events (kind 'events')
        "event_at": None,
        "seen": [],
        "late": 0,
        "reward": None,
        "expires": None,
        "o": {},
    }
    reward = None
    verdicts = []
    events = sorted((held or {}).get("events", []), key=lambda e: e["occurred_at"])
    for ev in events:
        step = apply_event(
            state, ev, spec, now_ms=now_ms, retention_ms=retention_ms, stamp_ms=stamp_ms
        )
        state = step.state or state
        reward = reward or step.reward
        verdicts.append(step.verdict)
    return state, reward, verdicts


def apply_event(
    state: Mapping[str, Any],
    event: Mapping[str, Any],
    spec: RewardRule,
    *,
    now_ms: int,
    retention_ms: int,
    stamp_ms: int | None = None,
) -> Step:
    """Attribute one event (as from `event_of`) to an open or finished join. A Reward it
    settles is stamped `stamp_ms` (the time of the record that settled it; default now), so
    the same record processed again after a crash sends the same Reward."""
    if event["type"] not in JOIN_TYPES:
        return Step(None, None, "ignored")
    if event["event_id"] in state["seen"]:
        return Step(None, None, "duplicate")
    new = {**state, "seen": [*state["seen"], event["event_id"]][-MAX_SEEN:]}
    if state["status"] != "pending" and _settled_early(state, event):
        # The reward went out at its settling event (a click); an event inside the window
        # that arrives after it (an impression behind its click, a second click) is not late:
        # the window was still open, the reward is simply final.
        return Step(new, None, "after_settled")
    if state["status"] != "pending" or event["occurred_at"] > state["deadline"]:
        new["late"] = state["late"] + 1
        return Step(new, None, "late")
    if event["type"] == "impression":
        if state.get("shown"):
            return Step(new, None, "duplicate")  # a second impression of one decision
        new["shown"] = True
        return Step(new, None, "attributed")
    if event["type"] in FEEDBACK_TYPES:
        new["fb"] = [*state.get("fb", []), [event["type"], event.get("value")]][-MAX_SEEN:]
    elif event["type"] == "click":
        new["clicked"] = True
    elif event["type"] == "conversion":
        new["converted"] = True
        new["value"] = state["value"] + float(event.get("value") or 0.0)
    elif event.get("sentiment") is not None:
        new["sentiment_sum"] = state["sentiment_sum"] + float(event["sentiment"])
        new["sentiment_n"] = state["sentiment_n"] + 1
    if spec.settles(event["type"]):
        new["event_at"] = event["occurred_at"]
        done = _finish(new, spec, event["type"], now_ms, retention_ms, stamp_ms)
        return Step(done, done["reward"], "settled")
    if new["event_at"] is None:
        new["event_at"] = event["occurred_at"]
    return Step(new, None, "attributed")


def close_due(
    state: Mapping[str, Any],
    spec: RewardRule,
    *,
    now_ms: int,
    grace_ms: int,
    retention_ms: int,
    stamp_ms: int | None = None,
) -> Step | None:
    """Close a pending join whose window (plus grace) has passed by the watermark `now_ms`;
    None if not due. The Reward is stamped `stamp_ms` (the tick's wall time; default now)."""
    if state["status"] != "pending" or now_ms < state["deadline"] + grace_ms:
        return None
    stamp = now_ms if stamp_ms is None else stamp_ms
    done = _finish(dict(state), spec, "timeout", stamp, retention_ms)
    return Step(done, done["reward"], "closed")


def hold_event(
    held: Mapping[str, Any] | None,
    event: Mapping[str, Any],
    *,
    user_id: str,
    partition: int,
    now_ms: int,
    max_hold_ms: int,
) -> Step:
    """Keep an event whose decision has not arrived yet (de-duplicated, bounded)."""
    if event["type"] not in JOIN_TYPES:
        return Step(None, None, "ignored")
    held = held or {
        "k": "e",
        "p": partition,
        "user_id": user_id,
        "events": [],
        "expires": now_ms + max_hold_ms,
        "o": {},
    }
    if any(e["event_id"] == event["event_id"] for e in held["events"]):
        return Step(None, None, "duplicate")
    if len(held["events"]) >= MAX_HELD:
        return Step(None, None, "overflow")
    return Step({**held, "events": [*held["events"], dict(event)]}, None, "held")


def _finish(
    state: dict[str, Any],
    spec: RewardRule,
    outcome: str,
    now_ms: int,
    retention_ms: int,
    stamp_ms: int | None = None,
) -> dict[str, Any]:
    dec = state["dec"]
    reward = {
        **dec,
        "user_id": state["user_id"],
        "reward": float(spec.value(state)),
        "clicked": state["clicked"],
        "converted": state["converted"],
        "shown": spec.shown(state),
        "conversion_value": state["value"],
        "sentiment": _mean_sentiment(state),
        "outcome": outcome,
        "event_at": state["event_at"],
        "rewarded_at": now_ms if stamp_ms is None else stamp_ms,
    }
    return {
        **state,
        "status": "done",
        "reward": reward,
        "expires": max(now_ms, state["deadline"]) + retention_ms,
    }


def _settled_early(state: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    reward = state.get("reward") or {}
    return reward.get("outcome") != "timeout" and event["occurred_at"] <= state["deadline"]


def _mean_sentiment(state: Mapping[str, Any]) -> float | None:
    n = state["sentiment_n"]
    return state["sentiment_sum"] / n if n else None
