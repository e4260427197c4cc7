"""The FastAPI application of the master."""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.engine import Engine

from common.checkpoints import CheckpointStore
from common.db import make_engine, make_session_factory
from common.errors import ConflictError, GridlessError, NotFoundError, SpecError, StorageError
from master.routes import studies, trials, workers
from master.services import StudyService

__all__ = ["create_app"]

log = logging.getLogger(__name__)

_STATUS: list[tuple[type[GridlessError], int]] = [
    (NotFoundError, 404),
    (ConflictError, 409),
    (SpecError, 422),
    (StorageError, 503),
]


def _domain_error(_request: Request, exc: Exception) -> JSONResponse:
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            if status >= 500:
                log.error("storage error: %s", exc, exc_info=exc.__cause__)
            return JSONResponse({"detail": str(exc)}, status_code=status)
    return JSONResponse({"detail": "internal error"}, status_code=500)


def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    where = ".".join(str(p) for p in first["loc"])
    return JSONResponse({"detail": f"{where}: {first['msg']}"}, status_code=422)


def create_app(*, database_url: str, store_root: Path, engine: Engine | None = None) -> FastAPI:
    """Build the master app over a database URL and a checkpoint store."""
    app = FastAPI(
        title="gridless master",
        version="0.1.0",
        description="Coarse-to-fine random hyperparameter search (CS231n's worker/master).",
    )
    engine = engine or make_engine(database_url)
    app.state.engine = engine
    app.state.service = StudyService(make_session_factory(engine))
    app.state.store = CheckpointStore(store_root)
    app.add_exception_handler(GridlessError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    for router in (studies.router, trials.router, workers.router):
        app.include_router(router, prefix="/api/v1")

    @app.get("/api/v1/health", tags=["health"])
    def health() -> dict[str, str]:
        """Liveness: answers while the master runs."""
        return {"status": "ok"}

    return app
