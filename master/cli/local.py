"""`gridless run` and `gridless resume`: a study on this machine, its master in-process and
its workers on a local (or joined) Ray, kept in a run directory."""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from gridless.common.checkpoints import is_url
from gridless.common.errors import GridlessError
from gridless.common.settings import run_paths
from gridless.common.spec import parse_spec
from gridless.master.cli.checks import (
    import_paths,
    print_preflight,
    run_preflight,
    validate,
    wire_spec,
)
from gridless.master.cli.client import ApiClient
from gridless.master.cli.follow import ColumnsOption, TopOption, follow, show_result
from gridless.master.cli.render import console, err, fail, parse_columns

__all__ = ["RUN_RECORD", "prepared_store", "resume", "run"]

# What `gridless resume` needs to know about a run: the spec's own path, the folders the
# workers import the user's code from, and the store.
RUN_RECORD = "run.json"

WorkersOption = Annotated[
    str,
    typer.Option(
        "--workers",
        "-w",
        help="workers to start: auto (as many as the free resources hold) or a number",
    ),
]
RayCpusOption = Annotated[
    int | None, typer.Option(min=0, max=4096, help="logical CPUs of the local Ray [detected]")
]
RayGpusOption = Annotated[
    int | None, typer.Option(min=0, max=1024, help="logical GPUs of the local Ray [detected]")
]


def prepared_store(location: str | Path) -> str | Path:
    """An fsspec URL as it is; a folder made absolute (workers run elsewhere) and created."""
    if is_url(str(location)):
        return str(location)
    folder = Path(location).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _worker_count(text: str) -> int | None:
    """`auto` -> None; a number from 1 to 256 -> itself."""
    if text == "auto":
        return None
    try:
        count = int(text)
    except ValueError:
        count = 0
    if not 1 <= count <= 256:
        raise fail(f"--workers: auto or a number from 1 to 256, but got {text!r}")
    return count


def run(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC", help="study spec (YAML)")],
    workers: WorkersOption = "auto",
    ray_cpus: RayCpusOption = None,
    ray_gpus: RayGpusOption = None,
    run_dir: Annotated[Path, typer.Option(help="where runs are kept")] = Path("gridless-runs"),
    ray_address: Annotated[
        str | None, typer.Option(help="join a Ray cluster (default: start a local Ray)")
    ] = None,
    store: Annotated[
        str | None,
        typer.Option(help="checkpoint store: a shared folder or s3://bucket/prefix [in RUN_DIR]"),
    ] = None,
    top: TopOption = 10,
    columns: ColumnsOption = None,
    force: Annotated[
        bool, typer.Option("--force", help="start even if the preflight checks fail")
    ] = False,
    resume_run: Annotated[
        bool, typer.Option("--resume", help="continue the newest run of this spec in RUN_DIR")
    ] = False,
    cpus_per_trial: Annotated[
        float | None, typer.Option(min=0.01, help="override the spec's resources.cpu")
    ] = None,
    gpus_per_trial: Annotated[
        float | None, typer.Option(min=0, help="override the spec's resources.gpu")
    ] = None,
) -> None:
    """Run a study end to end: preflight checks, master, local Ray workers, progress bar,
    ranked table. With --resume, continue the newest run of this spec instead."""
    try:
        spec = validate(spec_path)
        wire = _with_resources(wire_spec(spec_path, spec), cpus_per_trial, gpus_per_trial)
        spec = parse_spec(wire)
    except GridlessError as exc:
        raise fail(str(exc)) from None
    if resume_run:
        target = _newest_run(run_dir, spec.name)
        if (target / "spec.yaml").read_text(encoding="utf-8") != spec_path.read_text(
            encoding="utf-8"
        ):
            raise fail(
                f"{spec_path} changed since {target} started; resuming would mix two "
                "studies: start a new run without --resume, or restore the spec"
            )
        resume(
            target,
            workers=workers,
            ray_cpus=ray_cpus,
            ray_gpus=ray_gpus,
            ray_address=ray_address,
            top=top,
            columns=columns,
        )
        return
    if spec.train is not None:
        console.print(
            "preflight: none for a train: function (it ran no check; gridless check SPEC "
            "makes a smoke run)"
        )
    else:
        started = time.perf_counter()
        report = run_preflight(spec)
        took = time.perf_counter() - started
        if not report.passed:
            print_preflight(report)
            if not force:
                raise fail("preflight checks failed; fix the model or pass --force", code=1)
            err.print("[yellow]--force: starting despite failed checks[/]")
        else:
            console.print(
                f"preflight: gradient check and sanity checks pass in {took:.1f} s "
                "([bold]gridless check[/] shows them)"
            )

    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    target = (run_dir / f"{spec.name}-{stamp}").resolve()
    target.mkdir(parents=True, exist_ok=False)
    store_root = prepared_store(store or run_paths(target)[1])
    (target / "spec.yaml").write_text(spec_path.read_text(encoding="utf-8"), encoding="utf-8")
    record = {"spec": str(spec_path.resolve()), "import_paths": import_paths(spec_path)}
    record["store"] = str(store_root)
    # Trials run in the directory the run started in, resumed too: relative paths in the
    # user's code (data/, outputs/) keep their meaning wherever `resume` is typed.
    record["cwd"] = str(Path.cwd())
    (target / RUN_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    _drive(
        target,
        record,
        wire,
        workers=_worker_count(workers),
        ray=(ray_address, ray_cpus, ray_gpus),
        top=top,
        columns=columns,
    )


def resume(
    run_dir: Annotated[Path, typer.Argument(help="the run directory `gridless run` made")],
    workers: WorkersOption = "auto",
    ray_cpus: RayCpusOption = None,
    ray_gpus: RayGpusOption = None,
    ray_address: Annotated[
        str | None, typer.Option(help="join a Ray cluster (default: start a local Ray)")
    ] = None,
    top: TopOption = 10,
    columns: ColumnsOption = None,
) -> None:
    """Continue an interrupted or paused run from its database and checkpoints: trials
    that were running resume from their latest checkpoint; finished ones are kept."""
    target = run_dir.resolve()
    record_path = target / RUN_RECORD
    if not (target / "gridless.db").is_file() or not record_path.is_file():
        raise fail(f"{run_dir}: no run to resume here (gridless run makes one)")
    record = json.loads(record_path.read_text(encoding="utf-8"))
    spec_path = Path(record["spec"])
    if spec_path.is_file() and spec_path.read_text(encoding="utf-8") != (
        target / "spec.yaml"
    ).read_text(encoding="utf-8"):
        err.print(
            f"[yellow]note:[/] {spec_path} changed since this run started; the run goes on "
            f"with its own copy, {target / 'spec.yaml'}"
        )
    started_in = Path(record.get("cwd") or Path.cwd())
    if not started_in.is_dir():
        err.print(
            f"[yellow]note:[/] {started_in}, where this run started, is gone; its trials run "
            f"in {Path.cwd()}"
        )
        started_in = Path.cwd()
    here = Path.cwd()
    os.chdir(started_in)  # the local Ray's workers start in the driver's directory
    try:
        _drive(
            target,
            record,
            None,
            workers=_worker_count(workers),
            ray=(ray_address, ray_cpus, ray_gpus),
            top=top,
            columns=columns,
        )
    finally:
        os.chdir(here)


def _drive(
    target: Path,
    record: dict[str, Any],
    spec: dict[str, Any] | None,
    *,
    workers: int | None,
    ray: tuple[str | None, int | None, int | None],
    top: int,
    columns: str | None,
) -> None:
    """Serve `target`'s database and run its study with local Ray workers to its end: a
    new study (`spec`, sent over HTTP as `submit` sends it), or the interrupted one of the
    run (None); then follow it and show its result over HTTP as `submit` does."""
    from gridless.common.db import make_engine
    from gridless.master.app import create_app
    from gridless.master.launcher import RayLauncher
    from gridless.master.server import BackgroundServer

    db_path, _ = run_paths(target)
    store_root = record["store"]
    url = f"sqlite:///{db_path}"
    where: dict[str, str] = {}
    try:
        app_ = create_app(
            database_url=url,
            store_root=store_root,
            engine=make_engine(url),
            launcher_factory=lambda: RayLauncher(
                where["url"], str(store_root), python_path=record["import_paths"]
            ),
        )
        study_id, note = 0, ""  # a new study's id comes from POST /studies below
        if spec is None:
            study, note = app_.state.service.continue_interrupted()
            study_id, note = int(study.id), f": {note}"
    except GridlessError as exc:
        raise fail(str(exc)) from None
    console.print(f"run directory [bold]{target}[/]{note}")

    import ray as ray_api

    # Ray's start-up notices (token authentication on, and the like) are not the user's
    # business on a local run; errors still show.
    logging.getLogger("ray").setLevel(logging.ERROR)
    manager = app_.state.workers
    with BackgroundServer(app_) as server, ApiClient(server.url) as client:
        where["url"] = server.url
        console.print(
            f"master on {server.url}: dashboard at [link={server.url}/]{server.url}/[/link], "
            "API docs at /docs (while this run lasts)"
        )
        try:
            if spec is not None:
                study_id = client.create_study(spec).id
            _start_ray(ray_api, app_.state.protocol.active_resources()[0], workers, ray)
            count = _fit_workers(manager, workers, *app_.state.protocol.active_resources())
            client.launch_workers(count)
            follow(client, study_id, own_workers=True)
        except KeyboardInterrupt:
            err.print(
                "interrupted: workers stopped; the run directory keeps what finished. "
                f"Continue it with:\n  gridless resume {target}"
            )
            raise typer.Exit(130) from None
        except GridlessError as exc:  # no node can run a trial of this size, and the like
            raise fail(str(exc)) from None
        finally:
            manager.shutdown()
            ray_api.shutdown()
        final = show_result(
            client,
            study_id,
            top=top,
            columns=parse_columns(columns),
            resume=f"[bold]gridless resume {target}[/]",
            new_run=f"fix {record['spec']}, then [bold]gridless run {record['spec']}[/]",
        )
    console.print(
        f"dashboard and API afterwards: [bold]gridless master {target}"
        f"{f' --store {store_root}' if store_root != str(run_paths(target)[1]) else ''}[/], "
        f"then open http://127.0.0.1:8765/  (checkpoints in {store_root})"
    )
    if final.state_reason is not None:
        raise typer.Exit(1)


def _start_ray(
    ray_api: Any, cpu: float, workers: int | None, ray: tuple[str | None, int | None, int | None]
) -> None:
    """Join the Ray cluster at the given address, or start a local Ray with room for
    `workers` trials of `cpu` CPUs each (at least this machine's CPUs)."""
    address, cpus, gpus = ray
    if cpus is None and not address:
        cpus = max(os.cpu_count() or 1, math.ceil((workers or 0) * cpu))
    ray_api.init(
        address=address or "local",
        num_cpus=None if address or cpus is None else math.ceil(cpus),
        num_gpus=None if address or gpus is None else math.ceil(gpus),
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )


def _with_resources(raw: dict[str, Any], cpu: float | None, gpu: float | None) -> dict[str, Any]:
    """The spec to send with `--cpus-per-trial` / `--gpus-per-trial` applied."""
    if cpu is None and gpu is None:
        return raw
    wanted = dict(raw.get("resources") or {})
    if cpu is not None:
        wanted["cpu"] = cpu
    if gpu is not None:
        wanted["gpu"] = gpu
    return {**raw, "resources": wanted}


def _fit_workers(manager: Any, workers: int | None, cpu: float, gpu: float) -> int:
    """How many workers to start: what the free resources hold (auto), or `workers`
    capped to it, with a message; fails at once when no node can run even one."""
    room = manager.launcher.capacity(cpu=cpu, gpu=gpu)
    if room < 1:
        raise GridlessError(
            f"the Ray cluster has no free room for a trial asking cpu={cpu:g}, gpu={gpu:g}"
        )
    if workers is None:
        console.print(f"workers: {room} (cpu={cpu:g}, gpu={gpu:g} each)")
        return int(room)
    if workers > room:
        err.print(
            f"[yellow]--workers {workers}: only {room} fit (cpu={cpu:g}, gpu={gpu:g} each)[/]"
        )
        return int(room)
    return workers


def _newest_run(run_dir: Path, name: str) -> Path:
    runs = sorted(
        p for p in run_dir.glob(f"{name}-*") if (p / RUN_RECORD).is_file() and p.is_dir()
    )
    if not runs:
        raise fail(f"{run_dir}: no run of {name!r} to resume (gridless run makes one)")
    return runs[-1].resolve()
