"""The shared uvicorn server leaves the signals to the service's run loop."""

from __future__ import annotations

import signal

import uvicorn

from services.common.http_server import Server


def test_server_installs_no_signal_handlers_of_its_own() -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    server = Server(uvicorn.Config(app=lambda *a: None))
    with server.capture_signals():
        assert {sig: signal.getsignal(sig) for sig in before} == before
    # uvicorn's own server would have put its handler in (what this class exists to avoid)
    plain = uvicorn.Server(uvicorn.Config(app=lambda *a: None))
    with plain.capture_signals():
        assert signal.getsignal(signal.SIGTERM) != before[signal.SIGTERM]
    assert {sig: signal.getsignal(sig) for sig in before} == before
