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
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from gridless.common.checkpoints import is_url
from gridless.common.errors import GridlessError
from gridless.common.settings import run_paths
from gridless.common.spec import StudySpec, parse_spec
from gridless.master.cli.checks import import_paths, print_preflight, run_preflight, validate
from gridless.master.cli.render import (
    FAILED_SHOWN,
    console,
    err,
    fail,
    failure_lines,
    parse_columns,
    print_flags,
    ranked_table,
)

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
    top: Annotated[int, typer.Option(min=1, max=1000, help="rows of the final table")] = 10,
    columns: Annotated[
        str | None,
        typer.Option(help="more metric columns for the table, comma-separated (val_loss,val_r2)"),
    ] = None,
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
        spec = _with_resources(spec, cpus_per_trial, gpus_per_trial)
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
        if not report.passed:  # type: ignore[attr-defined]
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
    (target / RUN_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    _drive(
        target,
        record,
        spec,
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
    top: Annotated[int, typer.Option(min=1, max=1000, help="rows of the final table")] = 10,
    columns: Annotated[
        str | None,
        typer.Option(help="more metric columns for the table, comma-separated (val_loss,val_r2)"),
    ] = None,
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
    _drive(
        target,
        record,
        None,
        workers=_worker_count(workers),
        ray=(ray_address, ray_cpus, ray_gpus),
        top=top,
        columns=columns,
    )


def _drive(
    target: Path,
    record: dict[str, Any],
    spec: StudySpec | None,
    *,
    workers: int | None,
    ray: tuple[str | None, int | None, int | None],
    top: int,
    columns: str | None,
) -> None:
    """Serve `target`'s database, run its study with local Ray workers to its end and show
    the result: a new study (`spec`), or the interrupted one of the run (None)."""
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
        service = app_.state.service
        if spec is not None:
            study = service.create_study(spec)
            console.print(f"run directory [bold]{target}[/]")
        else:
            study, note = service.continue_interrupted()
            console.print(f"run directory [bold]{target}[/]: {note}")
    except GridlessError as exc:
        raise fail(str(exc)) from None

    import ray as ray_api

    ray_address, ray_cpus, ray_gpus = ray
    cpu, gpu = app_.state.protocol.active_resources()
    if ray_cpus is None and not ray_address:  # a local Ray: room for what was asked
        ray_cpus = max(os.cpu_count() or 1, math.ceil((workers or 0) * cpu))
    # Ray's start-up notices (token authentication on, and the like) are not the user's
    # business on a local run; errors still show.
    logging.getLogger("ray").setLevel(logging.ERROR)
    with BackgroundServer(app_) as server:
        where["url"] = server.url
        console.print(
            f"master on {server.url}: dashboard at [link={server.url}/]{server.url}/[/link], "
            "API docs at /docs (while this run lasts)"
        )
        ray_api.init(
            address=ray_address or "local",
            num_cpus=None if ray_address or ray_cpus is None else math.ceil(ray_cpus),
            num_gpus=None if ray_address or ray_gpus is None else math.ceil(ray_gpus),
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
        manager = app_.state.workers
        try:
            count = _fit_workers(manager, workers, cpu, gpu)
            manager.launch(count)
            _follow(service, study.id, manager)
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
    table, _ = ranked_table(service, study.id, top, parse_columns(columns))
    console.print(table)
    print_flags(service, study.id)
    counts = service.warning_counts(study.id)
    if counts:
        shown = ", ".join(f"{code} ({n})" for code, n in counts.items())
        console.print(f"babysitting warnings (trials): {shown}")
    failed, n_failed = service.list_trials(
        study.id, limit=FAILED_SHOWN, offset=0, state="failed", sort="-finished_at"
    )
    final = service.get_study(study.id)
    if final.stop_reason is not None:
        console.print(f"[bold]ended by its stop rule[/]: {final.stop_reason}", highlight=False)
    shown_failed = [{"number": t.number, "error": t.error} for t in failed]
    resume_hint = f"[bold]gridless resume {target}[/]"
    for line in failure_lines(
        study.id, final.state_reason, shown_failed, n_failed, resume=resume_hint
    ):
        console.print(line)
    console.print(
        f"dashboard and API afterwards: [bold]gridless master {target}"
        f"{f' --store {store_root}' if store_root != str(run_paths(target)[1]) else ''}[/], "
        f"then open http://127.0.0.1:8765/  (checkpoints in {store_root})"
    )
    if final.state_reason is not None:
        raise typer.Exit(1)


def _with_resources(spec: StudySpec, cpu: float | None, gpu: float | None) -> StudySpec:
    """The spec with `--cpus-per-trial` / `--gpus-per-trial` applied, validated again."""
    if cpu is None and gpu is None:
        return spec
    raw = spec.model_dump(mode="json", exclude_unset=True)
    wanted = dict(raw.get("resources") or {})
    if cpu is not None:
        wanted["cpu"] = cpu
    if gpu is not None:
        wanted["gpu"] = gpu
    return parse_spec({**raw, "resources": wanted})


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


def _follow(service: object, study_id: int, manager: object) -> None:
    from gridless.master.services import StudyService
    from gridless.master.workers import WorkerManager

    assert isinstance(service, StudyService)
    assert isinstance(manager, WorkerManager)
    progress = service.progress(study_id)
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("best {task.fields[best]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("stage 1", total=progress.total, best="-")
        while True:
            progress = service.progress(study_id)
            stage = (
                f"stage {progress.stage + 1}/{progress.stages}"
                if progress.stage is not None
                else "done"
            )
            best = f"{progress.best:.4f}" if progress.best is not None else "-"
            bar.update(task, completed=progress.finished, description=stage, best=best)
            if progress.state != "running":
                break
            if not manager.alive():
                raise GridlessError("every worker ended before the study finished")
            time.sleep(0.25)
