"""What every request passes before any route runs (a pure ASGI middleware):

- Host: only names this master answers to (loopback names, IP literals, the bind and
  advertised hosts, GRIDLESS_ALLOWED_HOSTS). A web page cannot reach the master through
  a DNS name it re-pointed at 127.0.0.1 (DNS rebinding): 421.
- Origin: a browser request from another origin may not change state (403); the master
  sends no CORS headers at all, so other origins cannot read its answers either.
- Size: a body over `max_body_bytes` is refused with 413, by its Content-Length or, for a
  chunked body, as soon as the count passes the limit.
- Load: at most `max_inflight` requests at once; beyond that 503 with Retry-After (the
  workers' client backs off and resends). Heartbeats and health checks are never shed,
  so a flood cannot make the master declare live workers lost.
"""

from __future__ import annotations

import ipaddress
import json
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["GuardMiddleware", "host_of"]

_NEVER_SHED = ("/api/v1/workers/heartbeat", "/api/v1/health")
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


def host_of(value: str) -> str:
    """The host part of a Host header or URL netloc, lower case, without port/brackets."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class GuardMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        allowed_hosts: Iterable[str] = (),
        max_body_bytes: int = 4 * 1024 * 1024,
        max_inflight: int = 1024,
    ) -> None:
        self.app = app
        self.allowed = {"localhost", *(host_of(h) for h in allowed_hosts if h)}
        self.max_body = max_body_bytes
        self.max_inflight = max_inflight
        self.inflight = 0
        self._lock = threading.Lock()

    def host_allowed(self, host: str) -> bool:
        return bool(host) and (_is_ip(host) or host in self.allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        host = host_of(headers.get("host", ""))
        if not self.host_allowed(host):
            await _answer(send, 421, f"this master does not answer for host {host[:100]!r}")
            return
        method = scope["method"]
        origin = headers.get("origin")
        if method not in _SAFE and origin is not None and origin != "null":
            if host_of(urlsplit(origin).netloc) != host or not self.host_allowed(host):
                await _answer(send, 403, "cross-origin requests may not change state")
                return
        if method not in _SAFE and headers.get("sec-fetch-site") == "cross-site":
            await _answer(send, 403, "cross-origin requests may not change state")
            return
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                await _answer(send, 400, "Content-Length must be a number of bytes")
                return
            if int(length) > self.max_body:
                await _answer(send, 413, f"the body exceeds {self.max_body} bytes")
                return
        shed = not scope["path"].startswith(_NEVER_SHED)
        if shed:
            with self._lock:
                if self.inflight >= self.max_inflight:
                    full = True
                else:
                    self.inflight += 1
                    full = False
            if full:
                await _answer(send, 503, "the master is busy; retry shortly", {"retry-after": "1"})
                return
        try:
            await self._call_counting(scope, receive, send)
        finally:
            if shed:
                with self._lock:
                    self.inflight -= 1

    async def _call_counting(self, scope: Scope, receive: Receive, send: Send) -> None:
        seen = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    # FastAPI passes an HTTPException raised while reading the body through
                    raise HTTPException(413, f"the body exceeds {self.max_body} bytes")
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except HTTPException as exc:  # raised by counted_receive outside a FastAPI route
            if started or exc.status_code != 413:
                raise
            await _answer(send, 413, str(exc.detail))


async def _answer(
    send: Send, status: int, detail: str, extra: dict[str, str] | None = None
) -> None:
    body = json.dumps({"detail": detail}).encode("utf-8")
    headers: list[Any] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    headers += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
