"""Who may change state: a bearer token on every state-changing request, when set.

The master binds 127.0.0.1 by default; listening beyond loopback without a token is
refused at start-up (`require_token_beyond_loopback`). The token is compared in constant
time, read only from the `Authorization: Bearer` header (never a query string), and
never logged.
"""

from __future__ import annotations

import hmac
import ipaddress

from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp

__all__ = ["TokenMiddleware", "is_loopback", "require_token_beyond_loopback"]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def is_loopback(host: str) -> bool:
    """Whether `host` is a loopback address (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_token_beyond_loopback(host: str, token: str | None) -> None:
    """Refuse to listen beyond loopback without a token.

    Raises:
        ValueError: naming the host and how to set a token.
    """
    if not is_loopback(host) and not token:
        raise ValueError(
            f"refusing to listen on {host} without a token: set GRIDLESS_TOKEN or --token "
            "(state-changing requests then need 'Authorization: Bearer <token>')"
        )


class TokenMiddleware(BaseHTTPMiddleware):
    """401 for a state-changing request without the right bearer token."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        super().__init__(app)
        self._token = token.encode("utf-8")

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        if request.method not in SAFE_METHODS:
            scheme, _, value = request.headers.get("authorization", "").partition(" ")
            ok = scheme.lower() == "bearer" and hmac.compare_digest(
                value.strip().encode("utf-8"), self._token
            )
            if not ok:
                return JSONResponse(
                    {"detail": "a valid bearer token is required for this request"},
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
        return await call_next(request)
