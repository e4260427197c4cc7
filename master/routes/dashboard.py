"""The dashboard: static files (no build step) served at /ui, reading the JSON API; and
the API's docs, Swagger UI at /docs and ReDoc at /redoc, from vendored copies in
static/vendor/ (no CDN: an air-gapped cluster sees them too)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import Response

__all__ = ["mount"]

STATIC = Path(__file__).resolve().parent.parent / "static"

# Everything the page loads comes from this origin; no inline script, no framing.
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


class _Headers(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)
        if request.url.path.startswith("/ui"):
            response.headers["Content-Security-Policy"] = CSP
            response.headers["X-Content-Type-Options"] = "nosniff"
            response.headers["Referrer-Policy"] = "no-referrer"
        return response


def mount(app: FastAPI) -> None:
    """Serve the dashboard at /ui and send / there."""
    app.mount("/ui", StaticFiles(directory=STATIC, html=True), name="ui")
    app.add_middleware(_Headers)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/ui/")

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=str(app.openapi_url),
            title=f"{app.title} - API docs",
            swagger_js_url="/ui/vendor/swagger-ui-bundle.js",
            swagger_css_url="/ui/vendor/swagger-ui.css",
            swagger_favicon_url="data:,",
            # No badge from validator.swagger.io: nothing leaves the master's origin.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=str(app.openapi_url),
            title=f"{app.title} - ReDoc",
            redoc_js_url="/ui/vendor/redoc.standalone.js",
            redoc_favicon_url="data:,",
            with_google_fonts=False,
        )
