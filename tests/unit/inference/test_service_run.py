"""`run`: a readiness that fails ends the service with its error at once (the supervisor
restarts it), instead of an inference that answers 503 until shutdown without a word."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.inference import app, http_api
from services.inference.settings import Settings


async def test_a_failed_readiness_ends_run_with_its_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADMUSE_INFERENCE_API_KEYS", "k")
    monkeypatch.setenv("ADMUSE_PSEUDONYM_SECRET", "s")
    monkeypatch.setenv("ADMUSE_INFERENCE_GRPC_PORT", "-1")
    served = asyncio.Event()

    @contextlib.asynccontextmanager
    async def fake_open(_settings: Settings) -> AsyncIterator[Any]:
        yield object()

    async def serve_forever(_svc: Any) -> None:
        served.set()
        await asyncio.Event().wait()

    async def broken_ready(_svc: Any, loaded: Any = None) -> None:
        await loaded
        await served.wait()
        raise RuntimeError("state topic unreadable")

    monkeypatch.setattr(app, "open_inference", fake_open)
    monkeypatch.setattr(app, "become_ready", broken_ready)
    monkeypatch.setattr(http_api, "serve_http", serve_forever)
    with pytest.raises(RuntimeError, match="state topic unreadable"):
        await asyncio.wait_for(app.run(Settings()), timeout=10)  # type: ignore[call-arg]


async def test_a_ready_service_keeps_serving_until_a_server_stops(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ADMUSE_INFERENCE_API_KEYS", "k")
    monkeypatch.setenv("ADMUSE_PSEUDONYM_SECRET", "s")
    monkeypatch.setenv("ADMUSE_INFERENCE_GRPC_PORT", "-1")
    ready = asyncio.Event()
    stop = asyncio.Event()

    @contextlib.asynccontextmanager
    async def fake_open(_settings: Settings) -> AsyncIterator[Any]:
        yield object()

    async def serve_until_stopped(_svc: Any) -> None:
        await stop.wait()
        raise OSError("port closed")

    async def fine_ready(_svc: Any, loaded: Any = None) -> None:
        await loaded
        ready.set()

    monkeypatch.setattr(app, "open_inference", fake_open)
    monkeypatch.setattr(app, "become_ready", fine_ready)
    monkeypatch.setattr(http_api, "serve_http", serve_until_stopped)
    task = asyncio.create_task(app.run(Settings()))  # type: ignore[call-arg]
    await asyncio.wait_for(ready.wait(), timeout=10)
    assert not task.done()
    stop.set()  # the server stops only now: run must have kept waiting on it past readiness
    with pytest.raises(OSError, match="port closed"):
        await asyncio.wait_for(task, timeout=10)
