"""Quiet the Kafka client's expected start-up retries.

On a broker's first start the group and transaction coordinators' topics do not exist yet,
and fresh topics have no leader for a moment: aiokafka logs an ERROR
(GroupCoordinatorNotAvailable) and WARNINGs (coordinator marked dead, NotLeaderForPartition)
while it retries, and a user takes them for a fault. During a grace period after start-up
those retriable messages are counted in `admuse_kafka_startup_retries_total{error}` instead of
printed; after it, or for any other message, logging is unchanged.
"""

from __future__ import annotations

import logging
import re
import time

from prometheus_client import Counter

__all__ = ["STARTUP_RETRIES", "StartupRetryFilter", "install_startup_retry_filter"]

STARTUP_RETRIES = Counter(
    "admuse_kafka_startup_retries",
    "Retriable Kafka client errors during start-up (coordinators or leaders not there yet), "
    "not logged",
    ["error"],
)
_TRANSIENT = re.compile(
    r"(GroupCoordinatorNotAvailable|CoordinatorNotAvailable|CoordinatorLoadInProgress|"
    r"NotCoordinator|NotLeaderForPartition|LeaderNotAvailable|UnknownTopicOrPartition|"
    r"Marking the coordinator dead)"
)


class StartupRetryFilter(logging.Filter):
    def __init__(self, grace_s: float = 60.0) -> None:
        super().__init__()
        self._until = time.monotonic() + grace_s

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("aiokafka") or time.monotonic() > self._until:
            return True
        match = _TRANSIENT.search(record.getMessage())
        if match is None:
            return True
        STARTUP_RETRIES.labels(match[1].replace(" ", "_")).inc()
        return False


def install_startup_retry_filter(grace_s: float = 60.0) -> None:
    """Add the filter to every handler of the root logger (call after logging is set up)."""
    flt = StartupRetryFilter(grace_s)
    for handler in logging.getLogger().handlers:
        handler.addFilter(flt)
