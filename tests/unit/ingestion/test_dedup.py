"""The dedup window: horizon, expiry, memory cap; event_id read straight from Avro bytes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.common.codec import SchemaRegistry
from services.ingestion.dedup import DedupWindow, event_id_of

CODEC = SchemaRegistry.load().codec("AdEvent")


def test_duplicate_only_inside_horizon() -> None:
    w = DedupWindow(horizon_ms=1000, max_entries=10_000)
    w.add("a", 5000)
    assert w.is_duplicate("a", 5500)
    assert not w.is_duplicate("a", 6000)
    assert not w.is_duplicate("b", 5500)


def test_first_sighting_kept() -> None:
    w = DedupWindow(horizon_ms=1000, max_entries=10_000)
    w.add("a", 5000)
    w.add("a", 5900)
    assert not w.is_duplicate("a", 6001)


def test_expire_drops_old_entries() -> None:
    w = DedupWindow(horizon_ms=1000, max_entries=10_000)
    for i in range(10):
        w.add(f"e{i}", 1000 + 100 * i)
    assert w.expire(2450) == 5
    assert len(w) == 5 and "e4" not in w and "e5" in w


def test_memory_cap_forgets_oldest() -> None:
    w = DedupWindow(horizon_ms=10**9, max_entries=1000)
    for i in range(1500):
        w.add(f"e{i}", i)
    assert len(w) == 1000 and "e0" not in w and "e1499" in w
    assert w.evicted_for_space == 500


@given(st.text(max_size=300).filter(lambda s: not any(0xD800 <= ord(c) <= 0xDFFF for c in s)))
def test_event_id_of_reads_first_field(event_id: str) -> None:
    data = CODEC.encode(
        {
            "event_id": event_id,
            "type": "view",
            "occurred_at": 1_795_000_000_000,
            "campaign_id": "c",
            "user_id": "p",
        }
    )
    assert event_id_of(data) == event_id


def test_event_id_of_garbage() -> None:
    for data in (None, b"", b"{}", b"\xc3\x01" + b"\x00" * 8, b"\xc3\x01" + b"\x00" * 8 + b"\x7f"):
        assert event_id_of(data) is None
