"""Sign-in, session, CSRF and the response headers every page carries.

The session is Starlette's signed cookie (itsdangerous): HttpOnly, SameSite=Strict, Secure
behind TLS (`ADMUSE_CONSOLE_COOKIE_SECURE`). It holds only "signed in" and this session's CSRF
token; every form posts the token back and `check_csrf` compares it in constant time (as every
key is compared, so the time taken says nothing about how much of a guess was right). The
Content-Security-Policy allows scripts, styles and images from the console itself only — no
inline script, nothing from another origin — so an escaping slip could not run code either.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.responses import Response

__all__ = [
    "CSP",
    "NotSignedIn",
    "SecurityHeaders",
    "check_csrf",
    "check_key",
    "csrf_token",
    "local_path",
    "require_user",
]

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; media-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


class NotSignedIn(Exception):
    """Raised by `require_user`; the app answers with the sign-in page or 401."""


class CsrfFailed(Exception):
    """A form came back without this session's token."""


class SecurityHeaders(BaseHTTPMiddleware):
    async def dispatch(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        for name, value in _HEADERS.items():
            response.headers.setdefault(name, value)
        if request.url.path not in ("/healthz", "/readyz") and not request.url.path.startswith(
            "/static/"
        ):
            response.headers.setdefault("Cache-Control", "no-store")
        return response


def check_key(given: str, keys: list[str]) -> bool:
    """Whether `given` is one of the admin keys (each compared in constant time)."""
    ok = False
    for key in keys:
        ok |= hmac.compare_digest(given.encode(), key.encode())
    return ok and bool(given)


def csrf_token(request: Request) -> str:
    """This session's CSRF token (made on first use)."""
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return str(token)


def check_csrf(request: Request, form: Any) -> None:
    """Raise CsrfFailed unless the form's `csrf` field is this session's token."""
    expected = request.session.get("csrf") or ""
    given = str(form.get("csrf") or "")
    if not expected or not hmac.compare_digest(given.encode(), str(expected).encode()):
        raise CsrfFailed("the form's CSRF token does not match this session; reload the page")


def require_user(request: Request) -> str:
    """FastAPI dependency: the signed-in user, else NotSignedIn."""
    user = request.session.get("user")
    if not user:
        raise NotSignedIn()
    return str(user)


def local_path(path: str, default: str = "/campaigns") -> str:
    """Only a path of this site to go to after an action (no open redirect)."""
    return path if path.startswith("/") and not path.startswith("//") else default
