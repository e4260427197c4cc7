"""The FastAPI application of the master."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.engine import Engine

from gridless.common.checkpoints import open_store
from gridless.common.db import make_engine, make_session_factory
from gridless.common.errors import (
    ConflictError,
    GridlessError,
    NotFoundError,
    SpecError,
    StorageError,
)
from gridless.master.context import MasterContext
from gridless.master.ensemble_jobs import EnsembleJobs
from gridless.master.guard import GuardMiddleware
from gridless.master.launcher import WorkerLauncher
from gridless.master.notify import Notifier
from gridless.master.protocol import TrialProtocol
from gridless.master.routes import checkpoints, dashboard, ensembles, studies, trials, workers
from gridless.master.security import TokenMiddleware
from gridless.master.services import StudyService
from gridless.master.trackers import TrackerHub, run_folder
from gridless.master.worker_manager import Monitor, WorkerManager

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


def create_app(
    *,
    database_url: str,
    store_root: str | Path,
    engine: Engine | None = None,
    token: str | None = None,
    heartbeat_interval_s: float = 5.0,
    launcher_factory: Callable[[], WorkerLauncher] | None = None,
    allowed_hosts: Iterable[str] = (),
    max_body_bytes: int = 4 * 1024 * 1024,
    max_inflight: int = 1024,
) -> FastAPI:
    """Build the master app over a database URL and a checkpoint store.

    Args:
        token: when set, every state-changing request needs `Authorization: Bearer <token>`.
        heartbeat_interval_s: how often workers beat; a trial is lost after 3 intervals.
        launcher_factory: makes the launcher `POST /workers` uses (Ray in production).
        allowed_hosts: host names (beyond loopback names and IP literals) the master
            answers to; see master/guard.py for this and the two limits.
    """
    engine = engine or make_engine(database_url)
    notifier = Notifier()
    sessions = make_session_factory(engine)
    trackers = TrackerHub(run_folder(database_url))  # MLflow/TensorBoard of specs that ask
    # for the hooks of master.notify and master.trackers
    sessions.configure(info={"notifier": notifier, "trackers": trackers})
    context = MasterContext(
        sessions=sessions,
        store=open_store(store_root),
        heartbeat_interval_s=heartbeat_interval_s,
    )
    protocol = TrialProtocol(context)
    manager = WorkerManager(protocol, launcher_factory)
    monitor = Monitor(protocol, manager, interval_s=heartbeat_interval_s)
    service = StudyService(context)
    ensemble_jobs = EnsembleJobs(service, manager)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        ensemble_jobs.recover()  # jobs of a master that stopped are failed, with why
        monitor.start()
        try:
            yield
        finally:
            monitor.stop()
            protocol.close()  # what is queued commits before the process ends
            notifier.close()  # and its notifications are tried (for 5 s at most)
            trackers.close()  # and the trackers' logs written

    app = FastAPI(
        title="gridless master",
        version="0.1.0",
        description="Coarse-to-fine random hyperparameter search (CS231n's worker/master).",
        lifespan=lifespan,
        docs_url=None,  # served from the master's own files (master/routes/dashboard.py)
        redoc_url=None,
    )
    app.state.engine = engine
    app.state.context = context
    app.state.service = service
    app.state.ensemble_jobs = ensemble_jobs
    app.state.protocol = protocol
    app.state.workers = manager
    app.state.monitor = monitor
    app.state.store = context.store
    app.state.notifier = notifier
    app.state.trackers = trackers
    if token:
        app.add_middleware(TokenMiddleware, token=token)
    # Added last, so it runs first: hosts, origins, sizes and load before anything else.
    app.add_middleware(
        GuardMiddleware,
        allowed_hosts=allowed_hosts,
        max_body_bytes=max_body_bytes,
        max_inflight=max_inflight,
    )
    app.add_exception_handler(GridlessError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    for router in (
        studies.router,
        trials.router,
        workers.router,
        checkpoints.router,
        ensembles.router,
    ):
        app.include_router(router, prefix="/api/v1")
    dashboard.mount(app)

    @app.get("/api/v1/health", tags=["health"])
    def health() -> dict[str, str]:
        """Liveness: answers while the master runs."""
        return {"status": "ok"}

    return app
