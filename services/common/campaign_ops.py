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

__all__ = ["StateChange", "change_campaign_state", "read_campaigns"]


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


async def read_campaigns(kafka: Any) -> dict[str, dict[str, Any]]:
    """Every campaign's current record, by campaign_id."""
    from services.common.codec import SchemaRegistry
    from services.common.compacted import read_compacted
    from services.common.topics import Topics

    topic = Topics.from_settings(kafka).campaigns.name
    return await read_compacted(kafka, topic, SchemaRegistry.load().codec("Campaign"))


async def change_campaign_state(
    kafka: Any, campaign_id: str, action: str, *, now: datetime | None = None
) -> StateChange:
    """Pause, resume or stop a campaign (`action`); raises LifecycleError (unknown campaign,
    a move the rules forbid). Publishes a new revision only when the state changes."""
    from services.common.codec import SchemaRegistry
    from services.common.kafka import make_producer, wait_for_broker
    from services.common.topics import Topics

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
        "revision": int(current["revision"]) + 1,
        "updated_at": now,
    }
    codec = SchemaRegistry.load().codec("Campaign")
    producer = make_producer(kafka)
    await producer.start()
    try:
        topic = Topics.from_settings(kafka).campaigns.name
        await producer.send_and_wait(topic, codec.encode(record), key=campaign_id.encode())
    finally:
        await producer.stop()
    return StateChange(campaign_id, before, after, record["revision"])
