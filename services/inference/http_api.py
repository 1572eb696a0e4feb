"""HTTP/JSON API (FastAPI): Decide, creatives and their SVG, health, readiness, metrics.

Authentication: `X-API-Key` on every route except /healthz, /readyz (without a key it says
only whether it is ready; campaigns and model versions need a key), /openapi.json (the
contract is public; it holds no data) and, unless `metrics_require_key`, /metrics (for
scrapers on the internal network; its labels list campaign ids and model versions). Bad
bodies get 422 with a `message` naming the field.
"""

import asyncio
import contextlib
import inspect
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.routing import Route

from services.common.http_server import Server
from services.domains.banner_render import TEMPLATES
from services.inference.decide import (
    MAX_CONTEXT,
    MAX_CONTEXT_KEY,
    MAX_CONTEXT_VALUE,
    MAX_ID,
    MAX_USER_ID,
    Inference,
    NoCreatives,
    NotReady,
    UnknownCampaign,
)
from services.inference.renditions import NoRendition, rendition

__all__ = ["build_http_app", "serve_http"]

_SVG = "image/svg+xml"


class DecideRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    campaign_id: str = Field(min_length=1, max_length=MAX_ID, examples=["spring"])
    user_id: str = Field(
        min_length=1, max_length=MAX_USER_ID, description="The app's own id; pseudonymized."
    )
    context: dict[
        Annotated[str, Field(min_length=1, max_length=MAX_CONTEXT_KEY)],
        Annotated[str, Field(max_length=MAX_CONTEXT_VALUE)],
    ] = Field(default_factory=dict, max_length=MAX_CONTEXT, examples=[{"country": "DE"}])


class DecideResponse(BaseModel):
    status: Literal["active"] = Field(description="The campaign ran the experiment.")
    decision_id: str
    campaign_id: str
    creative_id: str
    propensity: float = Field(gt=0, le=1)
    arm: Literal["optimized", "catalog", "control"]
    policy: str
    policy_version: str
    model_version: str | None
    segment: str
    render_url: str
    attributes: dict[str, str | float]


class HeldResponse(BaseModel):
    """A paused or stopped campaign's answer: no decision; the fallback creative or none."""

    status: Literal["paused", "stopped"]
    decision_id: None = Field(description="No decision was made or logged: send no events.")
    campaign_id: str
    creative_id: str | None = Field(description="The campaign's fallback creative, if any.")
    segment: str
    render_url: str | None
    attributes: dict[str, str | float]
    message: str


class CreativeOut(BaseModel):
    creative_id: str
    campaign_id: str
    origin: str
    name: str | None = None
    attributes: dict[str, str | float]
    status: str = Field(description="pending, live, retired or blocked (docs/contracts.md).")
    stage: str | None = None
    pinned: str | None = Field(None, description="Segment it is pinned for ('*': all).")
    segment: str | None = None
    model_version: str | None = None
    predicted_reward: float | None = None
    prior_alpha: float
    prior_beta: float
    render_url: str


class CreativeList(BaseModel):
    creatives: list[CreativeOut]


class Problem(BaseModel):
    detail: Any
    message: str | None = None


_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "Missing or unknown API key."},
    422: {"model": Problem, "description": "A field is missing or malformed (named)."},
}


def build_http_app(svc: Inference) -> FastAPI:
    extra: dict[str, Any] = {}
    if "telemetry" in inspect.signature(FastAPI).parameters:
        # FastAPI's built-in OpenTelemetry probes the global providers on every request;
        # this service reports through /metrics, so switch it off (a tenth of a decide).
        extra["telemetry"] = {"tracing": False, "metrics": False, "logs": False}
    app = FastAPI(
        **extra,
        title="admuse inference",
        version="1",
        description="Decide which creative to serve; creatives as SVG. See docs/contracts.md.",
        docs_url=None,
        redoc_url=None,
    )
    header = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key.")

    async def require_key(key: Annotated[str | None, Security(header)] = None) -> None:
        if not svc.key_ok(key):
            raise HTTPException(
                401,
                "missing or unknown API key: send one of the service's keys in X-API-Key",
                headers={"WWW-Authenticate": "APIKey"},
            )

    auth = [Depends(require_key)]

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
        message = f"{where}: {first.get('msg', 'invalid request')}"
        detail = [{"loc": e.get("loc"), "msg": e.get("msg"), "type": e.get("type")} for e in errors]
        return JSONResponse({"detail": detail, "message": message}, status_code=422)

    # The hot path skips FastAPI's dependency and body machinery (a third of its cost):
    # the key and the body are checked here, with the same schema and the same errors; the
    # OpenAPI document still describes both.
    decide_body = {
        "required": True,
        "content": {"application/json": {"schema": DecideRequest.model_json_schema()}},
    }

    @app.post(
        "/v1/decide",
        response_model=None,
        responses={
            200: {
                "model": DecideResponse | HeldResponse,
                "description": "A decision (status active), or a paused or stopped campaign's "
                "answer: its fallback creative or none, no decision (docs/contracts.md).",
            },
            404: {"model": Problem, "description": "Unknown campaign."},
            409: {"model": Problem, "description": "No live creative."},
            503: {"model": Problem, "description": "Still restoring state."},
            **_ERRORS,
        },
        openapi_extra={"requestBody": decide_body, "security": [{"APIKeyHeader": []}]},
        summary="Choose a creative for a user and log the decision",
    )
    async def decide(request: Request) -> Response:
        if not svc.key_ok(request.headers.get("x-api-key")):
            await require_key(None)
        try:
            body = DecideRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            raise RequestValidationError(
                [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
            ) from None
        try:
            result = await svc.decide(body.campaign_id, body.user_id, body.context, api="http")
        except UnknownCampaign as exc:
            svc.metrics.decide_errors.labels("404").inc()
            raise HTTPException(404, str(exc)) from None
        except NoCreatives as exc:
            svc.metrics.decide_errors.labels("409").inc()
            raise HTTPException(409, str(exc)) from None
        except NotReady as exc:
            svc.metrics.decide_errors.labels("503").inc()
            raise HTTPException(503, str(exc), headers={"Retry-After": "1"}) from None
        return Response(json.dumps(result, separators=(",", ":")), media_type="application/json")

    # Serve the hot path from a plain Starlette route placed first (FastAPI's route above
    # stays for the OpenAPI document and is never reached): same function, same errors.
    app.router.routes.insert(0, Route("/v1/decide", decide, methods=["POST"]))

    @app.get(
        "/v1/creatives",
        dependencies=auth,
        response_model=CreativeList,
        responses=_ERRORS,
        summary="List creatives (live ones by default)",
    )
    async def list_creatives(
        campaign_id: Annotated[str | None, Query(max_length=MAX_ID)] = None,
        status: Literal["live", "pending", "retired", "blocked", "all"] = "live",
    ) -> dict[str, Any]:
        out = [
            _creative_out(c)
            for c in sorted(svc.state.creatives.values(), key=lambda c: c["creative_id"])
            if (campaign_id is None or c["campaign_id"] == campaign_id)
            and (status == "all" or c["status"] == status)
        ]
        return {"creatives": out}

    @app.get(
        "/v1/creatives/{creative_id}.svg",
        dependencies=auth,
        response_class=Response,
        responses={
            200: {"content": {_SVG: {}}, "description": "The creative as SVG."},
            404: {"model": Problem, "description": "Unknown creative, or no SVG in its domain."},
            **_ERRORS,
        },
        summary="Render a creative as SVG (a banner, a film's storyboard card)",
    )
    async def creative_svg(
        creative_id: str,
        template: Literal[tuple(TEMPLATES)] | None = None,  # type: ignore[valid-type]
        width: Annotated[int, Query(ge=50, le=4000)] = 600,
        height: Annotated[int, Query(ge=30, le=4000)] = 200,
    ) -> Response:
        view = {"template": template, "width": width, "height": height}
        return await _rendered(svc, creative_id, "svg", view)

    for fmt, what in (("wav", "audio (WAV)"), ("mid", "a MIDI file"), ("txt", "text")):
        app.add_api_route(
            f"/v1/creatives/{{creative_id}}.{fmt}",
            _format_route(svc, fmt),
            methods=["GET"],
            dependencies=auth,
            response_class=Response,
            responses={
                200: {"description": f"The creative as {what}."},
                404: {"model": Problem, "description": f"Unknown creative, or no .{fmt}."},
                422: {"model": Problem, "description": "The creative cannot be rendered."},
                **_ERRORS,
            },
            summary=f"Render a creative as {what} (music: wav, mid, txt; film: txt)",
        )

    @app.get(
        "/v1/creatives/{creative_id}",
        dependencies=auth,
        response_model=CreativeOut,
        responses={404: {"model": Problem, "description": "Unknown creative."}, **_ERRORS},
        summary="One creative",
    )
    async def get_creative(creative_id: str) -> dict[str, Any]:
        return _creative_out(_find(svc, creative_id))

    @app.get("/healthz", summary="Liveness (no key)")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        summary="Readiness: state restored from Kafka (no key; details with a key)",
        responses={503: {"description": "Still restoring."}},
    )
    async def readyz(request: Request) -> JSONResponse:
        if not svc.ready:
            return JSONResponse({"status": "restoring"}, status_code=503)
        if not svc.key_ok(request.headers.get("x-api-key")):
            return JSONResponse({"status": "ready"})  # campaign ids and versions need a key
        return JSONResponse(
            {
                "status": "ready",
                "campaigns": len(svc.state.campaigns),
                "models": {k: b.version for k, b in svc.curator.models.items()},
                "decisions_pending": svc.log.pending,
            }
        )

    metrics_deps = auth if svc.settings.metrics_require_key else []

    @app.get(
        "/metrics",
        dependencies=metrics_deps,
        response_class=Response,
        summary="Prometheus metrics",
        include_in_schema=False,
    )
    async def metrics() -> Response:
        return Response(svc.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app


def _format_route(svc: Inference, fmt: str) -> Callable[[str], Awaitable[Response]]:
    """The endpoint of `GET /v1/creatives/{id}.<fmt>`."""

    async def creative_rendition(creative_id: str) -> Response:
        return await _rendered(svc, creative_id, fmt, None)

    creative_rendition.__name__ = f"creative_{fmt}"
    return creative_rendition


async def _rendered(
    svc: Inference, creative_id: str, fmt: str, view: dict[str, Any] | None
) -> Response:
    creative = _find(svc, creative_id)
    campaign = svc.state.campaigns.get(creative["campaign_id"])
    try:  # a WAV is milliseconds of numpy: off the event loop
        body, media = await asyncio.to_thread(rendition, creative, campaign, fmt, view)
    except NoRendition as exc:
        raise HTTPException(exc.status, str(exc)) from None
    return Response(body, media_type=media, headers={"Cache-Control": "max-age=300"})


def _find(svc: Inference, creative_id: str) -> dict[str, Any]:
    creative = svc.state.creatives.get(creative_id)
    if creative is None:
        raise HTTPException(404, f"unknown creative {creative_id[:200]!r}")
    return creative


def _creative_out(c: dict[str, Any]) -> dict[str, Any]:
    return {
        "creative_id": c["creative_id"],
        "campaign_id": c["campaign_id"],
        "origin": c["origin"],
        "name": c.get("name"),
        "attributes": c["attributes"],
        "status": c["status"],
        "stage": c.get("stage"),
        "pinned": c.get("pinned"),
        "segment": c.get("segment"),
        "model_version": c.get("model_version"),
        "predicted_reward": c.get("predicted_reward"),
        "prior_alpha": c.get("prior_alpha", 1.0),
        "prior_beta": c.get("prior_beta", 1.0),
        "render_url": f"/v1/creatives/{c['creative_id']}.svg",
    }


async def serve_http(svc: Inference) -> None:
    """Serve until cancelled, then shut down gracefully (in-flight requests finish)."""
    s = svc.settings
    config = uvicorn.Config(
        build_http_app(svc),
        host=s.http_host,
        port=s.http_port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        server_header=False,
        timeout_keep_alive=s.http_keep_alive_s,
    )
    server = Server(config)
    task = asyncio.create_task(server.serve())
    try:
        await asyncio.shield(task)
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
