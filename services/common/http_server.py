"""The uvicorn server every HTTP front end runs (ingestion, inference, console).

uvicorn installs its own SIGINT/SIGTERM handlers while it serves and re-raises the signal when
it stops. Our services own their signals: each one's run loop stops its consumers, flushes its
producers and then tells uvicorn to exit (``should_exit``), so uvicorn must not capture them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import uvicorn

__all__ = ["Server"]


class Server(uvicorn.Server):
    """uvicorn without its own signal capture: the service's run loop owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield
