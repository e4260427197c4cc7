"""A `gridless master` in its own process, as in production, and the databases it serves.

The master's benchmarks (report throughput, memory, dashboard under load) and the soak
start the master the way a user does (`python -m gridless.master.cli master RUN --new`)
on a free loopback port, so that what they measure is that process alone: its requests,
its resident memory, nothing of the client's.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from sqlalchemy import FromClause, func, select

from gridless.common.db import make_engine
from tests.net import free_port, wait_for_master

__all__ = ["BACKENDS", "MasterProcess", "count_rows", "database", "postgres_available", "rss_mb"]

BACKENDS = ("sqlite", "postgres")


class MasterProcess:
    """`gridless master` serving `database_url` from the run directory `root / "run"`.

    Its output goes to `root / "master.log"` (read it when a benchmark sees a 5xx).
    """

    def __init__(self, database_url: str, root: Path) -> None:
        self.database_url = database_url
        self.log_path = root / "master.log"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._command = [
            sys.executable,
            "-m",
            "gridless.master.cli",
            "master",
            str(root / "run"),
            "--new",
            "--port",
            str(self.port),
            "--database-url",
            database_url,
        ]
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("the master is not running")
        return self._process.pid

    def start(self) -> MasterProcess:
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(self._command, stdout=log, stderr=log)
        try:
            wait_for_master(self.url)
        except RuntimeError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
            self._process = None

    def create_study(self, spec: dict[str, Any]) -> int:
        """POST the spec; the new study's id.

        Raises:
            RuntimeError: with the master's detail when it refuses the spec.
        """
        answer = httpx.post(f"{self.url}/api/v1/studies", json=spec, timeout=120)
        if answer.status_code != 201:
            raise RuntimeError(f"POST /studies: {answer.status_code} {answer.text[:300]}")
        return int(answer.json()["id"])

    def logged_errors(self, limit: int = 20) -> list[str]:
        """The last `limit` lines of the master's log that name an error (for a 5xx)."""
        if not self.log_path.is_file():
            return []
        lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        return [line for line in lines if "ERROR" in line or "Error" in line][-limit:]

    def rss_mb(self) -> dict[str, float]:
        """The master's resident memory now and at its peak, in MB (10^6 bytes)."""
        return rss_mb(self.pid)

    def __enter__(self) -> MasterProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def rss_mb(pid: int) -> dict[str, float]:
    """{"rss": VmRSS, "peak": VmHWM} of process `pid` in MB (10^6 bytes), from /proc/PID/status."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) * 1024 / 1e6  # kB (KiB) to MB
    return {"rss": fields["VmRSS"], "peak": fields["VmHWM"]}


def postgres_available() -> bool:
    """Whether the PostgreSQL 15 binaries and psycopg that tests/postgres.py needs are here."""
    from tests.postgres import BIN

    try:
        import psycopg  # noqa: F401
    except ImportError:
        return False
    return (BIN / "initdb").is_file()


@contextlib.contextmanager
def database(backend: str) -> Iterator[tuple[str, Path]]:
    """A fresh database of `backend` ("sqlite" or "postgres") and a scratch folder.

    Yields:
        (SQLAlchemy URL, folder for the run directory and logs); both go away afterwards.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, but got {backend!r}")
    root = Path(tempfile.mkdtemp(prefix=f"gridless-bench-{backend}-"))
    server = None
    try:
        if backend == "postgres":
            from tests.postgres import Postgres

            server = Postgres()  # fsync=off, like the tests' server
            url = server.new_database()
        else:
            url = f"sqlite:///{root / 'gridless.db'}"
        yield url, root
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


def count_rows(database_url: str, table: FromClause) -> int:
    """Rows in `table` (e.g. EpochMetricRow.__table__), read after the master stopped."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(table)).scalar() or 0)
    finally:
        engine.dispose()
