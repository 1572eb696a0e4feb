"""The actions (POST, each with this session's CSRF token): sign-in and -out, apply a
campaign spec, pin or roll back a model. Each goes through the library function the
`admuse` command uses, so the console can do nothing the CLI would refuse or do otherwise."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from services.common.logging import get_logger
from services.console.pages import render
from services.console.security import check_csrf, check_key, local_path, require_user

__all__ = ["router"]

router = APIRouter()
_log = get_logger(__name__)
MAX_SPEC_BYTES = 256 * 1024


async def _back(request: Request, to: str, flash: str) -> Response:
    """Read the topics again (the page shown next shows the action's effect), then go `to`."""
    request.session["flash"] = flash
    await request.app.state.console.refresh()
    return RedirectResponse(to, status_code=303)


@router.post("/signin")
async def signin(request: Request) -> Response:
    form = await request.form()
    check_csrf(request, form)
    nxt = local_path(str(form.get("next") or ""))
    if not check_key(str(form.get("key") or ""), request.app.state.settings.keys()):
        _log.warning("console_signin_refused")
        return render(request, "signin.html", 401, next=nxt, problem="unknown admin key")
    csrf = request.session.get("csrf")
    request.session.clear()  # a fresh session at sign-in (no fixation)
    request.session.update({"user": "admin", "csrf": csrf})
    _log.info("console_signed_in")
    return RedirectResponse(nxt, status_code=303)


@router.post("/signout")
async def signout(request: Request, _user: str = Depends(require_user)) -> Response:
    check_csrf(request, await request.form())
    request.session.clear()
    return RedirectResponse("/signin", status_code=303)


def validate_spec_text(text: str) -> Any:
    """The spec in the editor through `admuse campaign apply`'s own reader and validator
    (services.common.campaign.load_spec, on a .yaml file); raises SpecError."""
    from services.common.campaign import SpecError, load_spec

    if len(text.encode()) > MAX_SPEC_BYTES:
        raise SpecError(f"campaign spec: larger than {MAX_SPEC_BYTES} bytes")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "campaign.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            return load_spec(path)
        except SpecError as exc:
            raise SpecError(str(exc).replace(str(path), "campaign spec")) from None


@router.post("/campaigns/apply")
async def apply_campaign(request: Request, _user: str = Depends(require_user)) -> Response:
    from services.cli import apply_spec
    from services.common.campaign import SpecError

    form = await request.form()
    check_csrf(request, form)
    text = str(form.get("spec") or "")
    try:
        spec = validate_spec_text(text)
    except SpecError as exc:
        return render(
            request, "campaigns.html", 422, spec_text=text, problems=str(exc).splitlines()
        )
    result = await apply_spec(request.app.state.settings.kafka, spec)
    _log.info("console_campaign_applied", campaign_id=result.campaign_id, revision=result.revision)
    return await _back(
        request,
        f"/campaigns/{result.campaign_id}",
        f"applied {result.campaign_id} revision {result.revision}: "
        f"{len(result.creatives)} catalog creative(s) live",
    )


@router.post("/models/{campaign_id}/pin")
async def pin(request: Request, campaign_id: str, _user: str = Depends(require_user)) -> Response:
    from services.cli import ModelOpError, pin_version

    form = await request.form()
    check_csrf(request, form)
    version = str(form.get("version") or "")
    try:
        await pin_version(request.app.state.settings, campaign_id, version)
    except ModelOpError as exc:
        return await _back(request, "/models", f"not pinned: {exc}")
    _log.info("console_model_pinned", campaign_id=campaign_id, version=version)
    return await _back(request, "/models", f"pinned {campaign_id} {version}; inference swaps it in")


@router.post("/models/{campaign_id}/rollback")
async def rollback(
    request: Request, campaign_id: str, _user: str = Depends(require_user)
) -> Response:
    from services.cli import ModelOpError, rollback_model

    check_csrf(request, await request.form())
    try:
        serving, to = await rollback_model(request.app.state.settings, campaign_id)
    except ModelOpError as exc:
        return await _back(request, "/models", f"not rolled back: {exc}")
    _log.info("console_model_rolled_back", campaign_id=campaign_id, to_version=to)
    return await _back(request, "/models", f"rolled {campaign_id} back from {serving} to {to}")


@router.post("/campaigns/{campaign_id}/state")
async def campaign_state(
    request: Request, campaign_id: str, user: str = Depends(require_user)
) -> Response:
    """Pause, resume or stop (services.common.campaign_ops, as `admuse campaign pause`)."""
    from services.common.campaign_ops import change_campaign_state
    from services.common.lifecycle import LifecycleError

    form = await request.form()
    check_csrf(request, form)
    action = str(form.get("action") or "")
    to = f"/campaigns/{campaign_id}"
    try:
        change = await change_campaign_state(
            request.app.state.settings.kafka, campaign_id, action, by=f"console:{user}"
        )
    except LifecycleError as exc:
        return await _back(request, to, f"not changed: {exc}")
    _log.info(
        "console_campaign_state", campaign_id=campaign_id, before=change.before, after=change.after
    )
    what = f"{change.before} → {change.after}" if change.changed else f"already {change.after}"
    return await _back(request, to, f"{campaign_id}: {what}")


@router.post("/creatives/{creative_id}/review")
async def review(request: Request, creative_id: str, user: str = Depends(require_user)) -> Response:
    """Approve, block, retire, pin or unpin (services.common.campaign_ops, as `admuse
    creatives approve|block|retire|pin|unpin`)."""
    from services.common.campaign_ops import review_creative
    from services.common.review import ReviewError

    form = await request.form()
    check_csrf(request, form)
    action = str(form.get("action") or "")
    segment = str(form.get("segment") or "") or None
    back = local_path(str(form.get("back") or ""), "/creatives")
    try:
        change = await review_creative(
            request.app.state.settings.kafka,
            creative_id,
            action,
            by=f"console:{user}",
            segment=segment,
        )
    except ReviewError as exc:
        return await _back(request, back, f"not done: {exc}")
    _log.info("console_creative_reviewed", creative_id=creative_id, action=action)
    after = change.after["status"] + (
        f", pinned {change.after['pinned']}" if change.after.get("pinned") else ""
    )
    return await _back(
        request,
        back,
        f"{creative_id}: {action} → {after}"
        if change.changed
        else f"{creative_id}: nothing to change",
    )
