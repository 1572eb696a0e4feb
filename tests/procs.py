"""Processes in tests: which of some pids still run."""

from __future__ import annotations

import os

__all__ = ["alive_pids"]


def alive_pids(pids: list[int]) -> list[int]:
    """The pids in `pids` that name a running process (or an unreaped zombie)."""
    alive = []
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        alive.append(pid)
    return alive
