"""Logging: third-party records come out as the same JSON as ours, repeats are folded."""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest
import structlog

from services.common.logging import RepeatFilter, configure_logging, get_logger, rate_limited


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    configure_logging("INFO", "json", service="svc", repeat_interval_s=30.0)
    yield out
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


def lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


def test_library_errors_are_json_with_a_count_of_repeats(captured: io.StringIO) -> None:
    handler = logging.getLogger().handlers[0]
    clock = Clock()
    (repeat,) = [f for f in handler.filters if isinstance(f, RepeatFilter)]
    repeat.clock = clock  # step past the interval without waiting
    lib = logging.getLogger("aiokafka.conn")
    for _ in range(1000):
        lib.error("Unable connect to node with id %s", 1)
    clock.t = 31.0
    lib.error("Unable connect to node with id %s", 1)
    try:
        raise ValueError("x")
    except ValueError:
        logging.getLogger("faust.worker").exception("crashed")
    records = lines(captured)
    assert [r["event"] for r in records] == [
        "Unable connect to node with id 1",
        "Unable connect to node with id 1",
        "crashed",
    ]
    assert "repeated" not in records[0]
    assert records[1]["repeated"] == 999 and records[1]["logger"] == "aiokafka.conn"
    assert records[0]["service"] == "svc" and records[0]["level"] == "error"
    assert "ValueError: x" in str(records[2]["exception"])


def test_own_records_are_not_folded(captured: io.StringIO) -> None:
    app = logging.getLogger("services.x")
    for _ in range(3):
        app.warning("same")
    assert len(lines(captured)) == 3


def test_rate_limited_logs_once_per_interval_with_the_count(captured: io.StringIO) -> None:
    clock = Clock()
    log = rate_limited(get_logger("t"), 10.0, clock)
    shown = [log.warning("kafka_send_failed", topic="a") for _ in range(5)]
    clock.t = 11.0
    shown.append(log.warning("kafka_send_failed", topic="a"))
    assert shown == [True, False, False, False, False, True]
    records = lines(captured)
    assert [r["repeated"] for r in records] == [0, 4]
