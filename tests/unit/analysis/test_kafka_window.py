"""Time and offset arguments of `admuse report` / `admuse ope` (parsing only; reads are in the
integration tests)."""

from __future__ import annotations

import pytest

from services.analysis.kafka_io import ALL_PARTITIONS, ReadWindow, parse_offsets, parse_time

NOW = 1_795_773_600_000  # 2026-11-27T10:00:00Z


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-27T10:00:00Z", NOW),
        ("2026-11-27T11:00:00+01:00", NOW),
        ("2026-11-27 10:00:00", NOW),  # naive = UTC
        (str(NOW), NOW),
        ("-2h", NOW - 7_200_000),
        ("-30m", NOW - 1_800_000),
        ("-7d", NOW - 7 * 86_400_000),
    ],
)
def test_parse_time(text: str, expected: int) -> None:
    assert parse_time(text, now_ms=NOW) == expected


def test_parse_time_error_says_what_is_accepted() -> None:
    with pytest.raises(ValueError, match="ISO-8601"):
        parse_time("yesterday")


def test_parse_offsets() -> None:
    assert parse_offsets("100-500") == {ALL_PARTITIONS: (100, 500)}
    assert parse_offsets("0:10-,3:5-7") == {0: (10, None), 3: (5, 7)}
    with pytest.raises(ValueError, match="START"):
        parse_offsets("a-b")


def test_window_keeps_half_open_range() -> None:
    w = ReadWindow(from_ms=10, to_ms=20)
    assert [w.keeps(t) for t in (9, 10, 19, 20)] == [False, True, True, False]
    assert ReadWindow().keeps(0)
