"""The `gridless` command line."""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer
from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from gridless.common.checkpoints import is_url
from gridless.common.errors import GridlessError
from gridless.common.settings import Settings, run_paths
from gridless.common.spec import StudySpec, load_spec, parse_spec

__all__ = ["app", "main"]

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Coarse-to-fine random hyperparameter search on Ray (CS231n's worker/master).",
)
# Piped output (CI logs, `| tee`) gets a table wide enough not to truncate columns.
_WIDTH = None if sys.stdout.isatty() or "COLUMNS" in os.environ else 140
console = Console(width=_WIDTH)
err = Console(stderr=True, width=_WIDTH)


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _import_paths(spec_path: Path) -> list[str]:
    """Where custom models are imported from: the spec's folder and the working directory."""
    return list(dict.fromkeys([str(spec_path.resolve().parent), str(Path.cwd())]))


def _prepared_store(location: str | Path) -> str | Path:
    """An fsspec URL as it is; a folder made absolute (workers run elsewhere) and created."""
    if is_url(str(location)):
        return str(location)
    folder = Path(location).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _validate(spec_path: Path) -> StudySpec:
    """Load and check a spec: schema, space, the model and its hyperparameter names."""
    from gridless.worker.function_runner import load_train_function
    from gridless.worker.trainer import _custom_factory, check_params

    spec = load_spec(spec_path)
    try:
        if spec.train is not None:
            sys.path[:0] = [p for p in _import_paths(spec_path) if p not in sys.path]
            hooks = {"train": spec.train, "predict": spec.predict, "evaluate": spec.evaluate}
            for role, target in hooks.items():
                if target is not None:
                    load_train_function(target, role=role)
            return spec
        check_params(spec.model, set(spec.space) | set(spec.fixed))
        if ":" in spec.model:
            sys.path[:0] = [p for p in _import_paths(spec_path) if p not in sys.path]
            _custom_factory(spec.model)
    except ValueError as exc:
        raise GridlessError(f"{spec_path}: {exc}") from None
    return spec


def _trials_table(
    name: str,
    metric: str,
    params: list[str],
    trials: list[dict[str, Any]],
    count: int,
    columns: list[str] | None = None,
) -> Table:
    """The ranked table (`run`, `submit`): one row a trial, best first; `columns` adds
    other reported metrics (at each trial's best epoch)."""
    extra = [c for c in columns or [] if c != metric]
    table = Table(title=f"{name}: top {len(trials)} of {count} trials by {metric}")
    for column in ("rank", "trial", "stage", metric, *extra, "epoch"):
        table.add_column(column, justify="right")
    table.add_column("state")
    for param in params:
        table.add_column(param, justify="right")
    table.add_column("warnings")
    for rank, t in enumerate(trials, start=1):
        values = []
        for param in params:
            value = (t["params"] or {}).get(param)
            values.append(f"{value:.3g}" if isinstance(value, float) else str(value))
        shown = [_shown_number((t.get("best_metrics") or {}).get(c)) for c in extra]
        table.add_row(
            str(rank) if t["best_score"] is not None else "-",
            str(t["number"]),
            str(t["stage"]),
            _shown_number(t["best_score"]),
            *shown,
            str(t["best_epoch"] or "-"),
            t["state"],
            *values,
            ", ".join(w.get("code", "?") for w in t["warnings"] or []),
        )
    return table


def _columns(text: str | None) -> list[str]:
    return [c.strip() for c in (text or "").split(",") if c.strip()]


def _shown_number(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) else "-"


def _ranked_table(
    service: object, study_id: int, limit: int, columns: list[str] | None = None
) -> tuple[Table, int]:
    from gridless.master.services import StudyService

    assert isinstance(service, StudyService)
    study = service.get_study(study_id)
    rows, count = service.ranked_trials(study_id, limit=limit, offset=0)
    stage_index = {st.id: st.index for st in service.stages(study_id)}
    trials = [
        {
            "params": row.params,
            "best_score": row.best_score,
            "number": row.number,
            "stage": stage_index.get(row.stage_id, -1) + 1,
            "best_epoch": row.best_epoch,
            "state": row.state,
            "warnings": row.warnings,
            "best_metrics": row.best_metrics,
        }
        for row in rows
    ]
    space = list(study.spec["space"])
    table = _trials_table(study.name, study.metric, space, trials, count, columns)
    return table, count


def _preflight(spec: StudySpec) -> object:
    from gridless.worker.diagnostics.preflight import preflight

    with console.status("preflight: gradient check and sanity checks..."):
        try:
            return preflight(spec.model, spec.dataset, spec.space, spec.fixed)
        except ValueError as exc:
            raise GridlessError(str(exc)) from None


def _print_gradcheck(grads: Any) -> None:
    table = Table(title=f"gradient check (pass: relative error <= {grads.threshold:.0e})")
    for column in ("parameter", "phase", "dims", "best h", "rel. error", "kinks", "verdict"):
        table.add_column(
            column, justify="left" if column in ("parameter", "phase", "verdict") else "right"
        )
    for row in grads.rows:
        table.add_row(
            row.name,
            row.phase,
            str(row.dims),
            f"{row.h:.0e}",
            f"{row.error:.2e}",
            str(row.kinks_crossed),
            row.verdict,
            style="" if row.passed else "bold red",
        )
    console.print(table)
    for note in grads.notes:
        console.print(f"[yellow]note:[/] {note}")


def _smoke(spec: StudySpec) -> bool:
    """`gridless check` of a train: function: the smoke run's checks; whether all passed."""
    from gridless.worker.diagnostics.smoke import smoke_check

    with console.status("smoke run of the training function on a tiny subset..."):
        report = smoke_check(spec.train or "", spec.space, spec.fixed, spec.objective.name)
    shown = ", ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in report.params.items()
    )
    console.print(f"[bold]check[/] of {report.train} at the center of the space: {shown}")
    marks = {
        "pass": "[green]pass[/]",
        "FAIL": "[bold red]FAIL[/]",
        "skipped": "[yellow]skipped[/]",
    }
    for name, status, detail in report.rows:
        console.print(f"{marks[status]}  {name}: {escape(detail)}")
    for grads in report.gradchecks:
        _print_gradcheck(grads)
    verdict = (
        "[bold green]checks that ran pass[/]" if report.passed else "[bold red]checks failed[/]"
    )
    console.print(verdict)
    return report.passed


def _print_preflight(report: object) -> None:
    from gridless.worker.diagnostics.preflight import PreflightReport

    assert isinstance(report, PreflightReport)
    shown = ", ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in report.params.items()
    )
    console.print(f"[bold]preflight[/] of {report.model} at the center of the space: {shown}")
    if report.gradcheck is not None:
        _print_gradcheck(report.gradcheck)
    for result in report.sanity:
        mark = "[green]pass[/]" if result.passed else "[bold red]FAIL[/]"
        console.print(f"{mark}  {result.name}: {result.detail}")
    for note in report.notes:
        console.print(f"[yellow]note:[/] {note}")
    verdict = "[bold green]all checks pass[/]" if report.passed else "[bold red]checks failed[/]"
    console.print(verdict)


@app.command()
def check(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC", help="study spec (YAML)")],
) -> None:
    """Gradient check and sanity checks of a study's model (the preflight of `run`)."""
    try:
        spec = _validate(spec_path)
    except GridlessError as exc:
        raise _fail(str(exc)) from None
    if spec.train is not None:
        if not _smoke(spec):
            raise typer.Exit(1)
        return
    report = _preflight(spec)
    _print_preflight(report)
    if not report.passed:  # type: ignore[attr-defined]
        raise typer.Exit(1)


@app.command()
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
        spec = _validate(spec_path)
        spec = _with_resources(spec, cpus_per_trial, gpus_per_trial)
    except GridlessError as exc:
        raise _fail(str(exc)) from None
    if resume_run:
        target = _newest_run(run_dir, spec.name)
        if (target / "spec.yaml").read_text(encoding="utf-8") != spec_path.read_text(
            encoding="utf-8"
        ):
            raise _fail(
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
        report = _preflight(spec)
        took = time.perf_counter() - started
        if not report.passed:  # type: ignore[attr-defined]
            _print_preflight(report)
            if not force:
                raise _fail("preflight checks failed; fix the model or pass --force", code=1)
            err.print("[yellow]--force: starting despite failed checks[/]")
        else:
            console.print(
                f"preflight: gradient check and sanity checks pass in {took:.1f} s "
                "([bold]gridless check[/] shows them)"
            )

    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    target = (run_dir / f"{spec.name}-{stamp}").resolve()
    target.mkdir(parents=True, exist_ok=False)
    store_root = _prepared_store(store or run_paths(target)[1])
    (target / "spec.yaml").write_text(spec_path.read_text(encoding="utf-8"), encoding="utf-8")
    record = {"spec": str(spec_path.resolve()), "import_paths": _import_paths(spec_path)}
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


# What `gridless resume` needs to know about a run: the spec's own path, the folders the
# workers import the user's code from, and the store.
RUN_RECORD = "run.json"


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
        raise _fail(str(exc)) from None

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
            raise _fail(str(exc)) from None
        finally:
            manager.shutdown()
            ray_api.shutdown()
    table, _ = _ranked_table(service, study.id, top, _columns(columns))
    console.print(table)
    _print_flags(service, study.id)
    counts = service.warning_counts(study.id)
    if counts:
        shown = ", ".join(f"{code} ({n})" for code, n in counts.items())
        console.print(f"babysitting warnings (trials): {shown}")
    failed, n_failed = service.list_trials(
        study.id, limit=FAILED_SHOWN, offset=0, state="failed", sort="-finished_at"
    )
    final = service.get_study(study.id)
    shown_failed = [{"number": t.number, "error": t.error} for t in failed]
    resume_hint = f"[bold]gridless resume {target}[/]"
    for line in _failure_lines(
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


@app.command()
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
        raise _fail(f"{run_dir}: no run to resume here (gridless run makes one)")
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
        raise _fail(f"{run_dir}: no run of {name!r} to resume (gridless run makes one)")
    return runs[-1].resolve()


FAILED_SHOWN = 5  # the newest failed trials a summary lists
FAILED_QUERY = {"state": "failed", "limit": FAILED_SHOWN, "sort": "-finished_at"}


def _failure_lines(
    study_id: int,
    reason: str | None,
    failed: list[dict[str, Any]],
    count: int,
    *,
    resume: str | None = None,
) -> list[str]:
    """What failed, in plain sight (issue 15): the breaker's reason and how to go on, then
    the newest failed trials with the first line of their error, and how many more."""
    lines = []
    if reason is not None:
        hint = resume or f"POST /api/v1/studies/{study_id}/resume on its master"
        lines.append(f"[bold red]study paused[/]: {escape(reason)}\nafter a fix: {hint}")
    if count:
        lines.append(f"[bold red]failed trials[/] ({count}), newest first:")
        for t in failed:
            first = (t.get("error") or "no error message").strip().splitlines()[0]
            lines.append(f"  trial {t['number']}: {escape(first[:300])}")
        if count > len(failed):
            lines.append(f"  ... and {count - len(failed)} more")
        lines.append(
            f"  (every error: GET /api/v1/studies/{study_id}/trials?state=failed; what a "
            "trial printed: gridless logs N)"
        )
    return lines


def _remote_failure_lines(client: object, study: dict[str, Any]) -> list[str]:
    """`_failure_lines` of a study read over the API (`status`, `submit`)."""
    failed = _call(client, "GET", f"/studies/{study['id']}/trials", params=FAILED_QUERY)
    assert isinstance(failed, dict)
    return _failure_lines(
        int(study["id"]), study.get("state_reason"), failed["data"], failed["count"]
    )


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


def _print_flags(service: object, study_id: int) -> None:
    from rich.panel import Panel

    from gridless.master.services import StudyService

    assert isinstance(service, StudyService)
    final = []
    for flag in service.border_flags(study_id):
        if flag["final"]:
            final.append(flag["message"])
        else:
            where = f"after stage {flag['stage']}, range extended"
            console.print(f"[yellow]border flag ({where}):[/] {flag['message']}")
    if final:
        body = (
            "\n".join(final) + "\nThe best value may lie beyond the range: widen it and run again."
        )
        console.print(
            Panel(body, title="best value still on a border", border_style="bold yellow")
        )


@app.command()
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
        raise _fail(str(exc)) from None
    db_path, default_store = run_paths(run_dir)
    store_root: str | Path = store or settings.store or default_store
    url = database_url or f"sqlite:///{db_path}"
    if database_url is None and not db_path.is_file():
        if not new:
            raise _fail(
                f"{run_dir} holds no run (no gridless.db): check the path, or pass --new to "
                "start an empty master there"
            )
        run_dir.mkdir(parents=True, exist_ok=True)
    store_root = _prepared_store(store_root)
    where: dict[str, str] = {}
    # A run that `gridless run` made: its workers import the user's code from where that
    # run's did (the spec's folder), whatever this command's working directory.
    record = run_dir / RUN_RECORD
    paths = (
        json.loads(record.read_text(encoding="utf-8"))["import_paths"] if record.is_file() else []
    )
    sys.path[:0] = [p for p in paths if p not in sys.path]  # ensemble hooks run here

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
        raise _fail(str(exc)) from None
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


def _worker_count(text: str) -> int | None:
    """`auto` -> None; a number from 1 to 256 -> itself."""
    if text == "auto":
        return None
    try:
        count = int(text)
    except ValueError:
        count = 0
    if not 1 <= count <= 256:
        raise _fail(f"--workers: auto or a number from 1 to 256, but got {text!r}")
    return count


def _api(url: str, token: str | None) -> object:
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=url.rstrip("/") + "/api/v1", headers=headers, timeout=30)


def _call(client: object, method: str, path: str, **kwargs: object) -> object:
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


UrlOption = Annotated[str, typer.Option(envvar="GRIDLESS_URL", help="the master's URL")]
TokenOption = Annotated[str | None, typer.Option(envvar="GRIDLESS_TOKEN", help="bearer token")]

workers_app = typer.Typer(help="Launch, kill and list the workers of a running master.")
app.add_typer(workers_app, name="workers")


@workers_app.command("ls")
def workers_ls(url: UrlOption = "http://127.0.0.1:8765", token: TokenOption = None) -> None:
    """List workers: state, current trial, last heartbeat."""
    body = _call(_api(url, token), "GET", "/workers")
    assert isinstance(body, dict)
    table = Table(title=f"{body['count']} workers ({len(body['running'])} running)")
    for column in ("worker", "state", "trial", "trials run", "last heartbeat"):
        table.add_column(column)
    for w in body["data"]:
        table.add_row(
            w["id"],
            w["state"],
            str(w["trial_id"] or "-"),
            str(w["trials_run"]),
            str(w["heartbeat_at"] or "-"),
        )
    console.print(table)


@workers_app.command("add")
def workers_add(
    count: Annotated[int, typer.Argument(min=1, max=256)] = 1,
    url: UrlOption = "http://127.0.0.1:8765",
    token: TokenOption = None,
) -> None:
    """Launch COUNT workers through the master's Ray."""
    body = _call(_api(url, token), "POST", "/workers", json={"count": count})
    assert isinstance(body, dict)
    console.print("started " + ", ".join(body["started"]))


@workers_app.command("kill")
def workers_kill(
    worker_id: Annotated[str | None, typer.Argument(help="a worker id")] = None,
    all_: Annotated[bool, typer.Option("--all", help="kill every worker")] = False,
    url: UrlOption = "http://127.0.0.1:8765",
    token: TokenOption = None,
) -> None:
    """Kill one worker (its trial resumes elsewhere) or all of them."""
    if (worker_id is None) == (not all_):
        raise _fail("name one worker id, or pass --all")
    path = "/workers" if all_ else f"/workers/{worker_id}"
    body = _call(_api(url, token), "DELETE", path)
    assert isinstance(body, dict)
    console.print("killed " + (", ".join(body["killed"]) or "none"))


checkpoints_app = typer.Typer(help="Browse a master's checkpoints: list, show, download.")
app.add_typer(checkpoints_app, name="checkpoints")


@checkpoints_app.command("ls")
def checkpoints_ls(
    study_id: Annotated[int, typer.Argument(help="study id")] = 1,
    trial: Annotated[int | None, typer.Option(help="only this trial (its number)")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    url: UrlOption = "http://127.0.0.1:8765",
    token: TokenOption = None,
) -> None:
    """A study's checkpoints, best score first (the order of their file names)."""
    params: dict[str, object] = {"limit": limit}
    if trial is not None:
        params["trial"] = trial
    client = _api(url, token)
    try:
        body = _call(client, "GET", f"/studies/{study_id}/checkpoints", params=params)
    finally:
        client.close()  # type: ignore[attr-defined]
    assert isinstance(body, dict)
    table = Table(title=f"{body['count']} checkpoints, best first")
    for column in ("path", "trial", "epoch", "score", "bytes"):
        table.add_column(column, justify="left" if column == "path" else "right")
    for c in body["data"]:
        table.add_row(
            c["path"], str(c["trial_number"]), str(c["epoch"]), f"{c['score']:.4f}", str(c["size"])
        )
    console.print(table)


@checkpoints_app.command("show")
def checkpoints_show(
    path: Annotated[str, typer.Argument(help="a path from `gridless checkpoints ls`")],
    url: UrlOption = "http://127.0.0.1:8765",
    token: TokenOption = None,
) -> None:
    """A checkpoint's metadata: trial parameters, epoch metrics, what the file records."""
    import json

    body = _call(_api(url, token), "GET", "/checkpoints/meta", params={"path": path})
    console.print_json(json.dumps(body))


@checkpoints_app.command("get")
def checkpoints_get(
    path: Annotated[str, typer.Argument(help="a path from `gridless checkpoints ls`")],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="default: the file name")
    ] = None,
    url: UrlOption = "http://127.0.0.1:8765",
    token: TokenOption = None,
) -> None:
    """Download a checkpoint (its SHA-256 is checked by the master and again here)."""
    import hashlib

    import httpx

    client = _api(url, token)
    assert isinstance(client, httpx.Client)
    try:
        response = client.get("/checkpoints/file", params={"path": path})
    except httpx.TransportError as exc:
        raise GridlessError(
            f"cannot reach the master at {url} ({exc.__class__.__name__})"
        ) from None
    if response.status_code >= 400:
        raise GridlessError(
            f"GET {path}: {response.status_code} {response.json().get('detail', '')}"
        )
    expected = response.headers.get("x-checkpoint-sha256", "")
    if hashlib.sha256(response.content).hexdigest() != expected:
        raise GridlessError(f"{path}: the download does not match its SHA-256; nothing written")
    target = output or Path(Path(path).name)
    target.write_bytes(response.content)
    console.print(f"wrote {target} ({len(response.content)} bytes, sha256 {expected[:16]}...)")


@app.command()
def ensemble(
    study_id: Annotated[int, typer.Argument(help="study id")] = 1,
    k: Annotated[int, typer.Option("-k", min=1, max=20, help="members per ensemble")] = 5,
    no_retrain: Annotated[
        bool, typer.Option("--no-retrain", help="only the top-K ensemble, no retraining")
    ] = False,
    predict: Annotated[
        str | None,
        typer.Option(help="a train: study's predict hook, module:function [the spec's]"),
    ] = None,
    evaluate: Annotated[
        str | None,
        typer.Option(help="a train: study's evaluate hook, module:function [the spec's]"),
    ] = None,
    url: UrlOption = "http://127.0.0.1:8765",
    token: TokenOption = None,
) -> None:
    """Build and evaluate ensembles of a finished study on its held-out test split."""
    client = _api(url, token)
    request: dict[str, Any] = {"k": k, "retrain": not no_retrain}
    request.update({key: v for key, v in (("predict", predict), ("evaluate", evaluate)) if v})
    with console.status("building ensembles (top-K, K seeds, K epochs, running average)..."):
        body = _call(client, "POST", f"/studies/{study_id}/ensembles", json=request)
    assert isinstance(body, dict)
    metric = body.get("metric", "accuracy")
    table = Table(title=f"ensembles of study {study_id}: validation chooses, test reports")
    for column in ("kind", "model or ensemble", "members", f"val {metric}", f"test {metric}"):
        table.add_column(
            column, justify="left" if column in ("kind", "model or ensemble") else "right"
        )
    table.add_column("test gain" if body.get("maximize", True) else "test change", justify="right")
    for r in body["rows"]:
        gain = r["test_gain"]
        table.add_row(
            r["kind"],
            r["name"],
            str(r["members"]),
            f"{r['val_score']:.4f}",
            f"{r['test_score']:.4f}",
            f"{100 * gain:+.2f} pt" if metric == "accuracy" else f"{gain:+.4f}",
        )
    console.print(table)
    console.print(f"test split: {body['test_examples']} examples, never used to choose")
    for note in body.get("notes", [])[1:]:
        console.print(f"note: {note}", highlight=False)


def _short(values: list[object]) -> str:
    return "[" + ", ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in values) + "]"


def _status_view(client: object, study_id: int, top: int = 5) -> Group:
    study = _call(client, "GET", f"/studies/{study_id}")
    assert isinstance(study, dict)
    ranked = _call(client, "GET", f"/studies/{study_id}/trials", params={"limit": top})
    assert isinstance(ranked, dict)
    best = f"{study['best_score']:.4f}" if study["best_score"] is not None else "-"
    head = (
        f"[bold]{study['name']}[/] ({study['state']}): {study['finished_trials']}/"
        f"{study['total_trials']} trials finished, best {study['metric']} {best}"
    )
    table = Table(title="stages")
    for column in ("stage", "state", "trials", "epochs", "ranges"):
        table.add_column(column)
    for st in study["stages"]:
        ranges = (
            "; ".join(f"{k} {next(iter(v.values()))}" for k, v in st["space"].items())
            or "(after the previous stage)"
        )
        table.add_row(
            str(st["index"] + 1), st["state"], str(st["trials"]), str(st["epochs"]), ranges
        )
    trials = _trials_table(
        study["name"],
        study["metric"],
        list(study["spec"]["space"]),
        ranked["data"],
        ranked["count"],
    )
    lines: list[RenderableType] = [head, table, trials]
    for st in study["stages"]:
        for d in st["decisions"].get("decisions", []):
            old, new = next(iter(d["old"].values())), next(iter(d["new"].values()))
            step = f"stage {st['index'] + 1} -> {st['index'] + 2}"
            lines.append(f"{step}: {d['param']} {_short(old)} -> {_short(new)} ({d['why']})")
    for flag in study["border_flags"]:
        lines.append(f"[bold yellow]border flag[/] (stage {flag['stage']}): {flag['message']}")
    lines.extend(_remote_failure_lines(client, study))
    if study["warning_counts"]:
        lines.append(
            "warnings: " + ", ".join(f"{k} ({v})" for k, v in study["warning_counts"].items())
        )
    return Group(*lines)


@app.command()
def status(
    study_id: Annotated[int, typer.Argument(help="study id")] = 1,
    url: UrlOption = "http://127.0.0.1:8765",
    token: TokenOption = None,
    watch: Annotated[bool, typer.Option(help="refresh every 2 s until the study ends")] = False,
) -> None:
    """Stages, ranges, best so far, border flags and warnings of a study."""
    from rich.live import Live

    client = _api(url, token)
    try:
        if not watch:
            console.print(_status_view(client, study_id))
            return
        with Live(_status_view(client, study_id), console=console, refresh_per_second=1) as live:
            while True:
                time.sleep(2)
                live.update(_status_view(client, study_id))
                study = _call(client, "GET", f"/studies/{study_id}")
                assert isinstance(study, dict)
                if study["state"] in ("completed", "stopped") or study.get("state_reason"):
                    break
    finally:
        client.close()  # type: ignore[attr-defined]


@app.command()
def logs(
    trial: Annotated[int, typer.Argument(help="trial number (as the tables show it)")],
    study_id: Annotated[int, typer.Option("--study", help="study id")] = 1,
    url: UrlOption = "http://127.0.0.1:8765",
    token: TokenOption = None,
) -> None:
    """What a trial's code printed: its stdout and stderr, every attempt."""
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    where = f"{url.rstrip('/')}/api/v1/studies/{study_id}/trials/{trial}/log"
    try:
        answer = httpx.get(where, headers=headers)
    except httpx.HTTPError as exc:
        raise _fail(f"cannot reach the master at {url}: {exc.__class__.__name__}") from None
    if answer.status_code != 200:
        raise _fail(f"{answer.status_code}: {answer.json().get('detail', answer.text)}")
    sys.stdout.write(answer.text)


@app.command()
def submit(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC", help="study spec (YAML)")],
    workers: Annotated[
        int, typer.Option("--workers", "-w", min=0, max=256, help="workers to launch [none]")
    ] = 0,
    url: UrlOption = "http://127.0.0.1:8765",
    token: TokenOption = None,
    watch: Annotated[bool, typer.Option(help="follow the study until it ends")] = True,
    top: Annotated[int, typer.Option(min=1, max=1000, help="rows of the final table")] = 10,
    columns: Annotated[
        str | None,
        typer.Option(help="more metric columns for the table, comma-separated (val_loss,val_r2)"),
    ] = None,
) -> None:
    """Send a study to a running master (a cluster's, from deploy/launch.sh), launch
    workers through its Ray, and follow it to the ranked table."""
    import yaml

    try:
        _validate(spec_path)  # the same checks as `run`, before anything is sent
    except GridlessError as exc:
        raise _fail(str(exc)) from None
    raw = yaml.safe_load(spec_path.read_text(encoding="utf-8"))
    client = _api(url, token)
    study = _call(client, "POST", "/studies", json=raw)
    assert isinstance(study, dict)
    base = url.rstrip("/")
    console.print(
        f"study {study['id']} ([bold]{study['name']}[/]) on {base}: dashboard at "
        f"[link={base}/]{base}/[/link]"
    )
    if workers:
        try:
            started = _call(client, "POST", "/workers", json={"count": workers})
        except GridlessError as exc:
            # A study no node can run would stay first in the master's queue and size every
            # later study's workers: it ends here, saying why.
            _call(client, "POST", f"/studies/{study['id']}/stop")
            raise _fail(f"{exc}; study {study['id']} was stopped") from None
        assert isinstance(started, dict)
        console.print("started workers " + ", ".join(started["started"]))
    if not watch:
        console.print(f"follow it with: gridless status {study['id']} --watch")
        return
    _watch_progress(client, int(study["id"]))
    trials = _call(client, "GET", f"/studies/{study['id']}/trials", params={"limit": top})
    detail = _call(client, "GET", f"/studies/{study['id']}")
    assert isinstance(trials, dict)
    assert isinstance(detail, dict)
    params = list(detail["spec"]["space"])
    console.print(
        _trials_table(
            detail["name"],
            detail["metric"],
            params,
            trials["data"],
            trials["count"],
            _columns(columns),
        )
    )
    for flag in detail["border_flags"]:
        console.print(f"[bold yellow]border flag[/] (stage {flag['stage']}): {flag['message']}")
    for line in _remote_failure_lines(client, detail):
        console.print(line)
    if detail.get("state_reason"):
        raise typer.Exit(1)


def _watch_progress(client: object, study_id: int) -> None:
    """A progress bar of finished trials, until the study completes or stops."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[best]}"),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("trials", total=None, best="")
        while True:
            study = _call(client, "GET", f"/studies/{study_id}")
            assert isinstance(study, dict)
            best = study["best_score"]
            bar.update(
                task,
                completed=study["finished_trials"],
                total=study["total_trials"],
                best=f"best {study['metric']} {best:.4f}" if best is not None else "",
            )
            if study["state"] in ("completed", "stopped") or study.get("state_reason"):
                return
            time.sleep(1)


def main() -> None:
    """Entry point of the `gridless` console script."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except GridlessError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
