"""A fresh broker's expected client retries are counted, not logged; everything else is."""

from __future__ import annotations

import logging

from prometheus_client import REGISTRY

from services.common.kafka_logs import StartupRetryFilter


def _record(name: str, level: int, msg: str) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, None, None)


def _count(error: str) -> float:
    value = REGISTRY.get_sample_value("admuse_kafka_startup_retries_total", {"error": error})
    return value or 0.0


def test_startup_retries_are_counted_not_logged_then_logged_after_grace() -> None:
    flt = StartupRetryFilter(grace_s=60)
    before = _count("GroupCoordinatorNotAvailable")
    coordinator = _record(
        "aiokafka.consumer.group_coordinator",
        logging.ERROR,
        "Group Coordinator Request failed: [Error 15] GroupCoordinatorNotAvailableError",
    )
    assert flt.filter(coordinator) is False
    assert _count("GroupCoordinatorNotAvailable") == before + 1
    assert flt.filter(_record("aiokafka.conn", logging.ERROR, "Unable to connect: refused"))
    assert flt.filter(_record("myapp", logging.ERROR, "NotLeaderForPartition in my app"))
    expired = StartupRetryFilter(grace_s=-1)  # its grace ended a second ago
    assert expired.filter(coordinator) is True
