"""A worker processes only partitions it held from its start: on gaining any, it restarts.

faust (0.15.3) hands a running worker the partitions it gains in a later rebalance from the
wrong position (#13, traced in bench/RESULTS.md): when a peer died and its partitions moved, the
survivor routed the tail of a gained partition — a watermark among it, which closed windows
early so clicks became `timeout` — before faust's seek to the committed offsets took it back.
The same would hold for a restarted worker whose first assignment were split with a killed
predecessor still in the group. A fresh process starts each partition at its committed offset
(aiokafka's own starting point agrees with faust's seek; records that arrive before the seek
come again after it, and the join's replay guard drops the repeats).

So the features worker's consumer keeps the stream partitions (changelogs aside) of its last
assignment; an assignment that adds any makes the worker leave the group (a clean stop: its
acknowledged offsets were committed at the revocation just before) and exit with
`REJOIN_EXIT_CODE`, without handing the assignment to faust. Its supervisor starts it again at
once — `admuse demo`/`admuse up` count it as a restart, not a crash; Docker Compose's restart
policy does the same — and the fresh process's first assignment holds the gained partitions.
A shrinking assignment (a peer joined) is not a gain and goes on in place, so workers joining
and leaving never restart each other in a loop.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterable
from typing import Any

from services.common.health import RESTART_EXIT_CODE
from services.common.logging import get_logger

__all__ = ["REJOIN_EXIT_CODE", "HeldPartitions", "rejoin_requested", "request_rejoin"]

REJOIN_EXIT_CODE = RESTART_EXIT_CODE  # "start me again", not a crash
_STOP_GRACE_S = 20.0  # a clean stop that takes longer ends with os._exit

_log = get_logger(__name__)
_requested = threading.Event()


class HeldPartitions:
    """The stream partitions of the worker's last assignment; `None` before the first."""

    def __init__(self) -> None:
        self.held: frozenset[Any] | None = None

    def gained(self, assigned: Iterable[Any]) -> frozenset[Any]:
        """The partitions `assigned` adds to the last assignment (empty for the first one, or
        one that keeps or shrinks the set); records `assigned` as held when nothing is gained."""
        now = frozenset(assigned)
        if self.held is None:
            self.held = now
            return frozenset()
        gained = now - self.held
        if not gained:
            self.held = now
        return gained


def rejoin_requested() -> bool:
    """Whether this process asked to be started again (`main` then exits with the code)."""
    return _requested.is_set()


def request_rejoin(gained: Iterable[Any], held: Iterable[Any]) -> None:
    """Stop the worker cleanly to be started again; a stop that hangs ends the process."""
    if _requested.is_set():
        return
    _requested.set()
    _log.warning(
        "features_rejoin",
        reason="partitions gained while running; restarting to take them from a clean start",
        gained=sorted(f"{tp.topic}[{tp.partition}]" for tp in gained),
        held=len(list(held)),
        exit_code=REJOIN_EXIT_CODE,
    )
    timer = threading.Timer(_STOP_GRACE_S, os._exit, (REJOIN_EXIT_CODE,))
    timer.daemon = True
    timer.start()
    os.kill(os.getpid(), signal.SIGTERM)  # the faust worker's own graceful stop
