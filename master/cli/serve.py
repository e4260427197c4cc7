"""`gridless master`: serve a run directory's database and store to workers and clients."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import typer

from gridless.common.errors import GridlessError
from gridless.common.settings import Settings, run_paths
from gridless.master.cli.local import RUN_RECORD, prepared_store
from gridless.master.cli.render import console, fail

__all__ = ["master"]


def master(
    run_dir: Annotated[Path, typer.Argument(help="run directory (made with --new)")],
    host: Annotated[str | None, typer.Option(help="address to bind [127.0.0.1]")] = None,
    port: Annotated[int | None, typer.Option(min=0, max=65535, help="[8765]")] = None,
    token: Annotated[str | None, typer.Option(help="required beyond loopback")] = None,
    database_url: Annotated[
        str | None, typer.Option(help="SQLAlchemy URL [RUN_DIR/gridless.db]")
    ] = None,
    ray_address: Annotated[
        str | None, typer.Option(help="Ray cluster for POST /workers [a local Ray]")
    ] = None,
    workers: Annotated[int, typer.Option(min=0, max=256, help="workers to launch at start")] = 0,
    advertise_url: Annotated[
        str | None, typer.Option(help="URL workers use to reach this master")
    ] = None,
    store: Annotated[
        str | None,
        typer.Option(
            help="checkpoint store: a shared folder or s3://bucket/prefix [RUN_DIR/store]"
        ),
    ] = None,
    heartbeat: Annotated[
        float | None, typer.Option(min=0.1, max=600, help="heartbeat interval in s [5]")
    ] = None,
    new: Annotated[
        bool, typer.Option("--new", help="start a new, empty run if RUN_DIR holds none")
    ] = False,
) -> None:
    """Serve a run directory's database and store: the REST API, claims and reports from
    workers, and worker launching through Ray. A restarted master picks up where its
    database left off. Options default to GRIDLESS_* environment variables."""
    import signal
    import threading

    from gridless.common.db import make_engine
    from gridless.master.app import create_app
    from gridless.master.launcher import RayLauncher
    from gridless.master.security import require_token_beyond_loopback
    from gridless.master.server import BackgroundServer

    settings = Settings()
    host = host or settings.host
    port = settings.port if port is None else port
    token = token or settings.token
    database_url = database_url or settings.database_url or None  # "" means unset
    ray_address = ray_address or settings.ray_address
    heartbeat = heartbeat or settings.heartbeat_interval_s
    try:
        require_token_beyond_loopback(host, token)
    except ValueError as exc:
        raise fail(str(exc)) from None
    db_path, default_store = run_paths(run_dir)
    store_root: str | Path = store or settings.store or default_store
    url = database_url or f"sqlite:///{db_path}"
    if database_url is None and not db_path.is_file():
        if not new:
            raise fail(
                f"{run_dir} holds no run (no gridless.db): check the path, or pass --new to "
                "start an empty master there"
            )
        run_dir.mkdir(parents=True, exist_ok=True)
    store_root = prepared_store(store_root)
    where: dict[str, str] = {}
    # A run that `gridless run` made: its workers import the user's code from where that
    # run's did (the spec's folder), whatever this command's working directory.
    record = run_dir / RUN_RECORD
    paths = (
        json.loads(record.read_text(encoding="utf-8"))["import_paths"] if record.is_file() else []
    )

    def make_launcher() -> RayLauncher:
        import ray

        if not ray.is_initialized():
            logging.getLogger("ray").setLevel(logging.ERROR)
            ray.init(
                address=ray_address or "local",
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
            )
        return RayLauncher(where["url"], str(store_root), token=token, python_path=paths)

    try:
        app_ = create_app(
            database_url=url,
            store_root=store_root,
            engine=make_engine(url),
            token=token,
            heartbeat_interval_s=heartbeat,
            launcher_factory=make_launcher,
            allowed_hosts=[
                host,
                urlsplit(advertise_url or "").hostname or "",
                *settings.allowed_hosts.split(","),
            ],
        )
    except GridlessError as exc:
        raise fail(str(exc)) from None
    server = BackgroundServer(app_, host=host, port=port)
    where["url"] = advertise_url or server.url
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    with server:
        console.print(f"serving {run_dir} on {server.url} (API docs at /docs)")
        if workers:
            app_.state.workers.launch(workers)
        try:
            done.wait()
        except KeyboardInterrupt:
            pass
        finally:
            app_.state.workers.shutdown()
