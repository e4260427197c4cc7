"""Shared fixtures: a master over a fresh SQLite file, and one Ray per test session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gridless.common.spec import StudySpec, parse_spec
from gridless.master.app import create_app
from gridless.master.server import BackgroundServer

TINY_SPEC: dict[str, Any] = {
    "name": "tiny",
    "model": "numpy.mlp",
    "dataset": "digits",
    "metric": "val_accuracy",
    "seed": 3,
    "space": {
        "learning_rate": {"log_uniform": [1e-2, 1.0]},
        "reg": {"log_uniform": [1e-6, 1e-2]},
        "hidden": {"int_log_uniform": [16, 64]},
    },
    "stages": [{"trials": 4, "epochs": 1}, {"trials": 2, "epochs": 2}],
}


def tiny_spec(**changes: Any) -> StudySpec:
    """The tiny study spec with top-level keys replaced."""
    return parse_spec({**TINY_SPEC, **changes})


class Master:
    """A real master (uvicorn on a free loopback port) over a fresh database: a SQLite
    file by default, or the PostgreSQL database `database_url` names.

    `launcher` gives it one for workers and jobs (ensembles): "thread" runs them in this
    process (`ThreadLauncher`), "ray" on the session's Ray, importing from `python_path`.
    """

    def __init__(
        self,
        root: Path,
        database_url: str | None = None,
        store_root: str | None = None,
        *,
        launcher: str | None = None,
        python_path: list[str] | None = None,
    ) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.store_root: str | Path = store_root or root / "store"
        if isinstance(self.store_root, Path):
            self.store_root.mkdir(parents=True, exist_ok=True)
        self.database_url = database_url or f"sqlite:///{root / 'gridless.db'}"
        self.launcher, self.python_path = launcher, python_path
        self.app = create_app(
            database_url=self.database_url,
            store_root=self.store_root,
            launcher_factory=self._make_launcher if launcher else None,
        )
        self.service = self.app.state.service
        self.server = BackgroundServer(self.app)

    @property
    def url(self) -> str:
        return self.server.url

    def _make_launcher(self) -> Any:
        from gridless.master.launcher import RayLauncher, ThreadLauncher

        if self.launcher == "ray":
            return RayLauncher(self.url, str(self.store_root), python_path=self.python_path)
        return ThreadLauncher(self.url, str(self.store_root))


def run_with_ray(
    master: Master,
    spec: StudySpec,
    *,
    workers: int = 2,
    python_path: list[str] | None = None,
    timeout_s: float = 300,
) -> int:
    """Create the study on `master`, run it with real Ray workers, wait for the end."""
    import time

    from gridless.master.launcher import RayLauncher

    study = master.service.create_study(spec)
    launcher = RayLauncher(master.url, str(master.store_root), python_path=python_path)
    launcher.launch(workers)
    try:
        deadline = time.monotonic() + timeout_s
        while master.service.progress(study.id).state == "running":
            assert time.monotonic() < deadline, "the study did not finish in time"
            time.sleep(0.2)
    finally:
        launcher.shutdown()
    return int(study.id)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """One throwaway PostgreSQL 15 server for the session (tests/postgres.py)."""
    from tests.postgres import Postgres

    server = Postgres()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[Any]:
    """One throwaway S3-compatible server (moto) for the session (tests/s3.py)."""
    from tests.s3 import S3Server

    server = S3Server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_url(s3_server: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """`s3://<a new bucket>/runs`, with GRIDLESS_STORE_OPTIONS pointing at the test server
    (workers launched afterwards inherit it)."""
    monkeypatch.setenv("GRIDLESS_STORE_OPTIONS", s3_server.options_json)
    return f"s3://{s3_server.new_bucket()}/runs"


@pytest.fixture(params=["sqlite", "postgres"])
def any_master(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Master]:
    """The master over SQLite, then over PostgreSQL: the same test runs on both."""
    url = None
    if request.param == "postgres":
        url = request.getfixturevalue("postgres").new_database()
    m = Master(tmp_path / "run", database_url=url)
    m.server.start()
    try:
        yield m
    finally:
        m.server.stop()
        m.app.state.engine.dispose()


@pytest.fixture
def master(tmp_path: Path) -> Iterator[Master]:
    m = Master(tmp_path / "run")
    m.server.start()
    try:
        yield m
    finally:
        m.server.stop()


@pytest.fixture(scope="session")
def ray_session() -> Iterator[Any]:
    """One local Ray for the whole session, 2 CPUs and a small object store."""
    import ray

    ray.init(
        address="local",
        num_cpus=2,
        object_store_memory=80 * 1024 * 1024,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture(autouse=True)
def _no_stray_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests never inherit a user's gridless settings.
    for key in list(os.environ):
        if key.startswith("GRIDLESS_"):
            monkeypatch.delenv(key)
