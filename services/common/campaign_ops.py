"""What a person does to a campaign or a creative, written to Kafka: the one write path of
`admuse campaign pause|resume|stop`, `admuse creatives …` and the console.

Each operation reads the key's current record from its compacted topic
(`services.common.compacted`), changes it by the rules (`services.common.lifecycle` for
campaigns, `services.common.review` for creatives) and publishes the whole record back under
the same key, acknowledged by Kafka before it returns. Inference follows those topics, so
the change acts within its follow latency (well under a second). Two writers changing the
same key at once: the later record wins (read-modify-write without a compare-and-set; the
operators are people, one click at a time).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.common.lifecycle import LifecycleError, campaign_state, next_state
from services.common.review import ReviewError, reviewed

__all__ = [
    "ReviewChange",
    "StateChange",
    "change_campaign_state",
    "operator",
    "read_campaigns",
    "read_creatives",
    "review_creative",
]


@dataclass(frozen=True)
class StateChange:
    """The outcome of a lifecycle action: `changed` is False when it was already there."""

    campaign_id: str
    before: str
    after: str
    revision: int

    @property
    def changed(self) -> bool:
        return self.before != self.after


@dataclass(frozen=True)
class ReviewChange:
    """The outcome of a review action: the record before and after (equal: nothing written)."""

    creative_id: str
    before: dict[str, Any]
    after: dict[str, Any]

    @property
    def changed(self) -> bool:
        return self.before != self.after


def operator() -> str:
    """Who runs this process (the login name), for `by` when a tool is not told."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


async def read_campaigns(kafka: Any) -> dict[str, dict[str, Any]]:
    """Every campaign's current record, by campaign_id."""
    return await _read(kafka, "campaigns", "Campaign")


async def read_creatives(
    kafka: Any, campaign_id: str | None = None, status: str | None = None
) -> dict[str, dict[str, Any]]:
    """Current creative records by creative_id, of one campaign and one status if given
    (`status="pending"`: the review queue)."""
    every = await _read(kafka, "creatives", "Creative")
    return {
        cid: c
        for cid, c in every.items()
        if (campaign_id is None or c["campaign_id"] == campaign_id)
        and (status is None or c["status"] == status)
    }


async def review_creative(
    kafka: Any,
    creative_id: str,
    action: str,
    *,
    by: str,
    segment: str | None = None,
    now: datetime | None = None,
) -> ReviewChange:
    """Approve, block, retire, pin (for `segment`, default: every segment it serves) or unpin
    a creative (services/common/review.py); raises ReviewError for an unknown creative or an
    action the rules forbid. Publishes only when the record changes."""
    from services.common.kafka import wait_for_broker

    await wait_for_broker(kafka, 30)
    current = (await read_creatives(kafka)).get(creative_id)
    if current is None:
        raise ReviewError(
            "unknown_creative",
            f"unknown creative {creative_id!r} (list them with `admuse creatives list`)",
        )
    keys = None
    if action == "pin" and segment is not None:
        campaign = (await read_campaigns(kafka)).get(current["campaign_id"])
        keys = campaign["segment_keys"] if campaign else None
    when = now or datetime.now(UTC)
    after = reviewed(current, action, by=by, now=when, segment=segment, segment_keys=keys)
    if after != current:
        await _publish(kafka, "creatives", "Creative", creative_id, after)
    return ReviewChange(creative_id, current, after)


async def _read(kafka: Any, topic: str, record: str) -> dict[str, dict[str, Any]]:
    from services.common.codec import SchemaRegistry
    from services.common.compacted import read_compacted
    from services.common.topics import Topics

    name = getattr(Topics.from_settings(kafka), topic).name
    return await read_compacted(kafka, name, SchemaRegistry.load().codec(record))


async def _publish(kafka: Any, topic: str, record: str, key: str, value: dict[str, Any]) -> None:
    """Write one record and wait for Kafka's acknowledgement."""
    from services.common.codec import SchemaRegistry
    from services.common.kafka import make_producer
    from services.common.topics import Topics

    encoded = SchemaRegistry.load().codec(record).encode(value)
    producer = make_producer(kafka)
    await producer.start()
    try:
        name = getattr(Topics.from_settings(kafka), topic).name
        await producer.send_and_wait(name, encoded, key=key.encode())
    finally:
        await producer.stop()


async def change_campaign_state(
    kafka: Any,
    campaign_id: str,
    action: str,
    *,
    by: str | None = None,
    now: datetime | None = None,
) -> StateChange:
    """Pause, resume or stop a campaign (`action`); raises LifecycleError (unknown campaign,
    a move the rules forbid). Publishes a new revision only when the state changes."""
    from services.common.kafka import wait_for_broker

    await wait_for_broker(kafka, 30)
    current = (await read_campaigns(kafka)).get(campaign_id)
    if current is None:
        raise LifecycleError(
            "unknown_campaign",
            f"unknown campaign {campaign_id!r}: no such campaign has been applied "
            "(list them with `admuse campaign list`)",
        )
    before = campaign_state(current)
    after = next_state(campaign_id, before, action)
    if after == before:
        return StateChange(campaign_id, before, after, int(current["revision"]))
    now = now or datetime.now(UTC)
    record = {
        **current,
        "state": after,
        "state_changed_at": now,
        "state_changed_by": by,
        "revision": int(current["revision"]) + 1,
        "updated_at": now,
    }
    await _publish(kafka, "campaigns", "Campaign", campaign_id, record)
    return StateChange(campaign_id, before, after, record["revision"])
