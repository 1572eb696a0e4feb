"""Wiring: the FastAPI app (session, headers, templates, routes), the snapshot loop in its
lifespan, and `main()` serving it with uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import secrets
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from pydantic import ValidationError
from starlette.middleware.sessions import SessionMiddleware

from services.common.codec import SchemaRegistry
from services.common.lifecycle import campaign_state
from services.common.logging import configure_logging, get_logger
from services.common.review import needs_approval
from services.console import actions, pages
from services.console.security import CsrfFailed, NotSignedIn, SecurityHeaders
from services.console.settings import Settings
from services.console.state import ConsoleState

__all__ = ["create_app", "main"]

_HERE = Path(__file__).parent
_log = get_logger(__name__)


def templates() -> Environment:
    env = Environment(
        loader=FileSystemLoader(_HERE / "templates"),
        autoescape=select_autoescape(["html"], default=True),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=StrictUndefined,  # a misspelt field fails the page (and its test)
    )
    env.filters["pct"] = lambda v, d=2: "–" if v is None or v != v else f"{v:.{d}%}"
    env.globals["campaign_state"] = campaign_state
    env.globals["needs_approval"] = needs_approval
    env.filters["num"] = lambda v, d=3: "–" if v is None or v != v else f"{v:.{d}g}"
    return env


def create_app(settings: Settings, state: ConsoleState | None = None) -> FastAPI:
    """The console; without `state` it makes one and runs its loop in the lifespan."""
    state = state or ConsoleState(settings, SchemaRegistry.load())

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(state.run(), name="console-snapshot")
        _log.info("console_started", host=settings.http_host, port=settings.http_port)
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    extra: dict[str, Any] = {}
    if "telemetry" in inspect.signature(FastAPI).parameters:
        extra["telemetry"] = {"tracing": False, "metrics": False, "logs": False}
    app = FastAPI(
        **extra,
        title="admuse console",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    secret = settings.session_secret
    app.add_middleware(
        SessionMiddleware,
        secret_key=secret.get_secret_value() if secret else secrets.token_urlsafe(32),
        session_cookie="admuse_console",
        max_age=settings.session_max_age_s,
        same_site="strict",
        https_only=settings.cookie_secure,
    )
    app.add_middleware(SecurityHeaders)
    app.state.console = state
    app.state.settings = settings
    app.state.templates = templates()
    app.mount("/static", StaticFiles(directory=_HERE / "static"), name="static")

    @app.exception_handler(NotSignedIn)
    async def _signin(request: Request, _exc: NotSignedIn) -> Any:
        if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
            return RedirectResponse(f"/signin?next={request.url.path}", status_code=303)
        return JSONResponse({"detail": "sign in first"}, status_code=401)

    @app.exception_handler(CsrfFailed)
    async def _csrf(_request: Request, exc: CsrfFailed) -> Any:
        _log.warning("console_csrf_refused")
        return JSONResponse({"detail": str(exc)}, status_code=403)

    app.include_router(pages.router)
    app.include_router(actions.router)
    return app


def main() -> None:
    try:
        settings = Settings()  # type: ignore[call-arg]  # required values come from the env
    except ValidationError as exc:
        problems = "; ".join(
            f"ADMUSE_CONSOLE_{str(e['loc'][0]).upper()}: {e['msg']}" for e in exc.errors()
        )
        raise SystemExit(
            f"console settings are incomplete or wrong: {problems} (see the README table 'console')"
        ) from None
    configure_logging(settings.log.level, settings.log.format, service="console")
    asyncio.run(_serve(settings))


async def _serve(settings: Settings) -> None:
    """Serve until SIGTERM or SIGINT, then stop gracefully and exit 0 (a supervisor or
    Compose stopping the console is not a crash)."""
    import uvicorn

    from services.common.http_server import Server

    server = Server(  # signals are ours (below)
        uvicorn.Config(
            create_app(settings),
            host=settings.http_host,
            port=settings.http_port,
            log_config=None,
            access_log=False,
            proxy_headers=False,
            server_header=False,
            timeout_keep_alive=settings.http_keep_alive_s,
        )
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda sig=sig: _stop(server, sig))
    await server.serve()


def _stop(server: Any, sig: signal.Signals) -> None:
    _log.info("console_stopping", signal=sig.name)
    server.should_exit = True
