"""The pages (GET): campaigns, experiment, creatives, models, operations, the event stream
that makes them live, health, and sign-in. Every page but health needs a signed-in session."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse

from services.console.charts import interval_bars, line_chart
from services.console.security import csrf_token, local_path, require_user
from services.console.state import ConsoleState
from services.domains import DomainError, domain_for
from services.inference import FORMATS, NoRendition, rendition

__all__ = ["render", "router"]

router = APIRouter()
SSE_HEARTBEAT_S = 15.0


def _state(request: Request) -> ConsoleState:
    return request.app.state.console  # type: ignore[no-any-return]


def render(request: Request, name: str, status_code: int = 200, **ctx: Any) -> HTMLResponse:
    """A page, or only its live parts when the page's script asks (X-Console-Partial)."""
    state = _state(request)
    partial = request.headers.get("x-console-partial") == "1"
    # Only a whole page shows (and so takes) the flash: a live refresh of the page before the
    # action's redirect must not swallow it.
    flash = None if partial else request.session.pop("flash", None)
    html = request.app.state.templates.get_template(name).render(
        request=request,
        csrf=csrf_token(request),
        user=request.session.get("user"),
        snap=state.snapshot,
        ops=state.ops,
        read_error=state.error,
        version=state.version,
        partial=partial,
        flash=flash,
        **ctx,
    )
    return HTMLResponse(html, status_code=status_code)


@router.get("/healthz", include_in_schema=False)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", include_in_schema=False)
async def readyz(request: Request) -> JSONResponse:
    ready = _state(request).ready
    return JSONResponse({"ready": ready}, status_code=200 if ready else 503)


@router.get("/signin")
async def signin_page(request: Request, next: str = "/campaigns") -> HTMLResponse:
    return render(request, "signin.html", next=local_path(next), problem=None)


@router.get("/")
async def home(_user: str = Depends(require_user)) -> Response:
    return Response(status_code=303, headers={"Location": "/campaigns"})


@router.get("/campaigns")
async def campaigns(request: Request, _user: str = Depends(require_user)) -> HTMLResponse:
    return render(request, "campaigns.html", spec_text="", problems=None)


@router.get("/campaigns/{campaign_id}")
async def campaign(
    request: Request, campaign_id: str, _user: str = Depends(require_user)
) -> HTMLResponse:
    return render(request, "campaign.html", cid=campaign_id)


@router.get("/experiment/{campaign_id}.json")
async def experiment_json(
    request: Request, campaign_id: str, _user: str = Depends(require_user)
) -> JSONResponse:
    view = _view(request, campaign_id)
    return JSONResponse(
        {
            "report": view.report.to_dict(),
            "regret": view.regret,
            "pending": view.pending,
        }
    )


def _view(request: Request, campaign_id: str) -> Any:
    snap = _state(request).snapshot
    if snap is None or campaign_id not in snap.views:
        raise HTTPException(404, f"no experiment data for campaign {campaign_id!r} yet")
    return snap.views[campaign_id]


def rate_label(campaign: Mapping[str, Any] | None) -> str:
    """What a campaign's rate is: CTR for click rewards; the mean reward for the other kinds
    (music listens, film votes: `events`; conversion values: `weighted`)."""
    kind = ((campaign or {}).get("reward") or {}).get("kind", "click")
    return "CTR" if kind == "click" else "reward rate"


@router.get("/experiment/{campaign_id}")
async def experiment(
    request: Request, campaign_id: str, _user: str = Depends(require_user)
) -> HTMLResponse:
    view = _view(request, campaign_id)
    snap = _state(request).snapshot
    rate = rate_label(snap.campaigns.get(campaign_id) if snap else None)
    return render(
        request,
        "experiment.html",
        cid=campaign_id,
        view=view,
        rate=rate,
        chart=line_chart(view.series.arms, f"{rate} over time, {campaign_id}"),
        attr_charts={
            name: interval_bars(
                [(e.group, e.rate, e.low, e.high) for e in effects[:12]],
                f"{name}: {rate} by value",
            )
            for name, effects in view.report.attributes.items()
        },
    )


@router.get("/creatives")
async def creatives(
    request: Request,
    campaign: str = "",
    status: str = "",
    segment: str = "",
    _user: str = Depends(require_user),
) -> HTMLResponse:
    snap = _state(request).snapshot
    rows: list[dict[str, Any]] = []
    statuses: set[str] = set()
    segments: set[str] = set()
    if snap is not None:
        effects = {(cid, e.group): e for cid, v in snap.views.items() for e in v.report.creatives}
        for c in sorted(
            snap.creatives.values(), key=lambda c: (c["campaign_id"], c["creative_id"])
        ):
            statuses.add(c["status"])
            if c.get("segment"):
                segments.add(c["segment"])
            if campaign and c["campaign_id"] != campaign:
                continue
            if status and c["status"] != status:
                continue
            if segment and c.get("segment") not in (segment, None):
                continue
            rows.append(
                {
                    "c": c,
                    "e": effects.get((c["campaign_id"], c["creative_id"])),
                    "preview": _preview(snap.campaigns.get(c["campaign_id"])),
                    "rate": rate_label(snap.campaigns.get(c["campaign_id"])),
                }
            )
    effect_charts = {}
    if snap is not None:
        for cid, view in sorted(snap.views.items()):
            if campaign and cid != campaign:
                continue
            for seg, per_attr in sorted(view.segment_effects.items()):
                if segment and seg != segment:
                    continue
                for name, effects in per_attr.items():
                    effect_charts[(cid, seg, name)] = interval_bars(
                        [(e.group, e.rate, e.low, e.high) for e in effects[:12]],
                        f"{cid} {seg}: {rate_label(snap.campaigns.get(cid))} by {name}",
                    )
    return render(
        request,
        "creatives.html",
        effect_charts=effect_charts,
        rows=rows,
        statuses=sorted(statuses),
        segments=sorted(segments),
        f_campaign=campaign,
        f_status=status,
        f_segment=segment,
    )


@router.get("/creatives/{creative_id}.{fmt}")
async def creative_rendition(
    request: Request, creative_id: str, fmt: str, _user: str = Depends(require_user)
) -> Response:
    """The creative drawn by its campaign's domain: a banner or storyboard `svg`, a track's
    `wav` / `mid`, a `txt` (lyric, synopsis)."""
    snap = _state(request).snapshot
    creative = snap.creatives.get(creative_id) if snap else None
    if creative is None or snap is None:
        raise HTTPException(404, f"no creative {creative_id!r}")
    if fmt not in FORMATS:
        raise HTTPException(404, f"no format {fmt!r}; formats: {list(FORMATS)}")
    campaign = snap.campaigns.get(creative["campaign_id"])
    try:
        body, media = await asyncio.to_thread(
            rendition, creative, campaign, fmt, {"width": 300, "height": 100}
        )
    except NoRendition as exc:
        raise HTTPException(exc.status, str(exc)) from None
    return Response(body, media_type=media, headers={"Cache-Control": "private, max-age=60"})


def _preview(campaign: dict[str, Any] | None) -> str:
    """What the gallery shows of a creative: its picture, else its sound, else its text."""
    try:
        formats = domain_for(campaign or {})[0].formats
    except DomainError:
        return "svg"
    return next((f for f in ("svg", "wav", "txt") if f in formats), "svg")


def stored_models(settings: Any, campaign_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """{campaign: signed versions with their quality report}, from the model store."""
    from services.cli import stored_versions
    from services.common.model_store import ModelStore

    store = ModelStore(settings.model_store_url)
    out = {}
    for cid in campaign_ids:
        try:
            versions = stored_versions(store, cid)
        except (OSError, ValueError, json.JSONDecodeError):
            versions = []
        out[cid] = versions
    return out


@router.get("/models")
async def models(request: Request, _user: str = Depends(require_user)) -> HTMLResponse:
    snap = _state(request).snapshot
    settings = request.app.state.settings
    campaign_ids = sorted(snap.campaigns) if snap else []
    stored = await asyncio.to_thread(stored_models, settings, campaign_ids)
    return render(request, "models.html", stored=stored)


@router.get("/operations")
async def operations(request: Request, _user: str = Depends(require_user)) -> HTMLResponse:
    return render(request, "operations.html")


@router.get("/events")
async def events(request: Request, _user: str = Depends(require_user)) -> StreamingResponse:
    """Server-sent events: `update` with the state version whenever what pages show changed."""
    state = _state(request)

    async def stream() -> Any:
        seen = state.version
        yield f"event: hello\ndata: {json.dumps({'version': seen})}\n\n"
        while not await request.is_disconnected():
            now = await state.wait_change(seen, SSE_HEARTBEAT_S)
            if now == seen:
                yield ": heartbeat\n\n"
                continue
            seen = now
            yield f"event: update\ndata: {json.dumps({'version': now})}\n\n"

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"X-Accel-Buffering": "no"}
    )
