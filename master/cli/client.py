"""The CLI's client of a master's REST API: its URL and token options, one call that turns
HTTP and transport errors into a `GridlessError`."""

from __future__ import annotations

from typing import Annotated

import typer

from gridless.common.errors import GridlessError

__all__ = ["TokenOption", "UrlOption", "api", "call"]

UrlOption = Annotated[str, typer.Option(envvar="GRIDLESS_URL", help="the master's URL")]
TokenOption = Annotated[str | None, typer.Option(envvar="GRIDLESS_TOKEN", help="bearer token")]


def api(url: str, token: str | None) -> object:
    """An HTTP client of the master's API at `url`, sending `token` as a bearer token."""
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=url.rstrip("/") + "/api/v1", headers=headers, timeout=30)


def call(client: object, method: str, path: str, **kwargs: object) -> object:
    """One request's JSON; an unreachable master or an error status is a `GridlessError`."""
    import httpx

    assert isinstance(client, httpx.Client)
    try:
        response = client.request(method, path, **kwargs)  # type: ignore[arg-type]
    except httpx.TransportError as exc:
        raise GridlessError(
            f"cannot reach the master at {client.base_url} ({exc.__class__.__name__})"
        ) from None
    if response.status_code >= 400:
        detail = response.json().get("detail", response.text) if response.content else ""
        raise GridlessError(f"{method} {path}: {response.status_code} {detail}")
    return response.json()
