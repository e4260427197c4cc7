"""The commands to a running master, over its REST API: `submit`, `status`, `logs`,
`workers ls|add|kill`, `checkpoints ls|show|get` and `ensemble`."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Group
from rich.table import Table

from gridless.common.errors import GridlessError
from gridless.master.cli.checks import validate, wire_spec
from gridless.master.cli.client import ApiClient, ApiError, TokenOption, UrlOption
from gridless.master.cli.follow import (
    ColumnsOption,
    TopOption,
    failed_trials,
    follow_to_result,
    no_worker_hint,
    poll_study,
)
from gridless.master.cli.render import console, fail, parse_columns, show, status_view
from gridless.master.schemas import EnsembleJobPublic, StudyDetailPublic

__all__ = [
    "LaunchOption",
    "WatchOption",
    "checkpoints_app",
    "ensemble",
    "logs",
    "status",
    "submit",
    "workers_app",
]

# The options of the commands that start a study's trials and follow them (submit, extend).
LaunchOption = Annotated[
    int, typer.Option("--workers", "-w", min=0, max=256, help="workers to launch [none]")
]
WatchOption = Annotated[bool, typer.Option(help="follow the study until it ends")]


workers_app = typer.Typer(help="Launch, kill and list the workers of a running master.")


@workers_app.command("ls")
def workers_ls(url: UrlOption = "http://127.0.0.1:8765", token: TokenOption = None) -> None:
    """List workers: state, current trial, last heartbeat."""
    with ApiClient(url, token) as client:
        answer = client.workers()
    table = Table(title=f"{answer.count} workers ({len(answer.running)} running)")
    for column in ("worker", "state", "trial", "trials run", "last heartbeat"):
        table.add_column(column)
    for w in answer.data:
        table.add_row(
            w.id,
            w.state,
            str(w.trial_id or "-"),
            str(w.trials_run),
            w.heartbeat_at.isoformat() if w.heartbeat_at is not None else "-",
        )
    console.print(table)


@workers_app.command("add")
def workers_add(
    count: Annotated[int, typer.Argument(min=1, max=256)] = 1,
    url: UrlOption = "http://127.0.0.1:8765",
    token: TokenOption = None,
) -> None:
    """Launch COUNT workers through the master's Ray."""
    with ApiClient(url, token) as client:
        started = client.launch_workers(count).started
    console.print("started " + ", ".join(started))


@workers_app.command("kill")
def workers_kill(
    worker_id: Annotated[str | None, typer.Argument(help="a worker id")] = None,
    all_: Annotated[bool, typer.Option("--all", help="kill every worker")] = False,
    url: UrlOption = "http://127.0.0.1:8765",
    token: TokenOption = None,
) -> None:
    """Kill one worker (its trial resumes elsewhere) or all of them."""
    if (worker_id is None) == (not all_):
        raise fail("name one worker id, or pass --all")
    with ApiClient(url, token) as client:
        killed = client.kill_workers() if worker_id is None else client.kill_worker(worker_id)
    console.print("killed " + (", ".join(killed.killed) or "none"))


checkpoints_app = typer.Typer(help="Browse a master's checkpoints: list, show, download.")


@checkpoints_app.command("ls")
def checkpoints_ls(
    study_id: Annotated[int, typer.Argument(help="study id")] = 1,
    trial: Annotated[int | None, typer.Option(help="only this trial (its number)")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    url: UrlOption = "http://127.0.0.1:8765",
    token: TokenOption = None,
) -> None:
    """A study's checkpoints, best score first (the order of their file names)."""
    with ApiClient(url, token) as client:
        page = client.checkpoints(study_id, trial=trial, limit=limit)
    table = Table(title=f"{page.count} checkpoints, best first")
    for column in ("path", "trial", "epoch", "score", "bytes"):
        table.add_column(column, justify="left" if column == "path" else "right")
    for c in page.data:
        table.add_row(c.path, str(c.trial_number), str(c.epoch), f"{c.score:.4f}", str(c.size))
    console.print(table)


@checkpoints_app.command("show")
def checkpoints_show(
    path: Annotated[str, typer.Argument(help="a path from `gridless checkpoints ls`")],
    url: UrlOption = "http://127.0.0.1:8765",
    token: TokenOption = None,
) -> None:
    """A checkpoint's metadata: trial parameters, epoch metrics, what the file records."""
    with ApiClient(url, token) as client:
        meta = client.checkpoint_meta(path)
    console.print_json(meta.model_dump_json())


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

    with ApiClient(url, token) as client:
        content, expected = client.checkpoint_file(path)
    if hashlib.sha256(content).hexdigest() != expected:
        raise GridlessError(f"{path}: the download does not match its SHA-256; nothing written")
    target = output or Path(Path(path).name)
    target.write_bytes(content)
    console.print(f"wrote {target} ({len(content)} bytes, sha256 {expected[:16]}...)")


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
    """Build and evaluate ensembles of a finished study on its held-out test split (a job
    on a worker, followed until it ends)."""
    with ApiClient(url, token) as client:
        job = client.build_ensembles(
            study_id, k=k, retrain=not no_retrain, predict=predict, evaluate=evaluate
        )
        job = _follow_ensemble_job(client, study_id, job)
    if job.report is None:
        raise GridlessError(f"ensemble job {job.id} failed: {job.error}")
    body = job.report
    metric = body.metric
    table = Table(title=f"ensembles of study {study_id}: validation chooses, test reports")
    for column in ("kind", "model or ensemble", "members", f"val {metric}", f"test {metric}"):
        table.add_column(
            column, justify="left" if column in ("kind", "model or ensemble") else "right"
        )
    table.add_column("test gain" if body.maximize else "test change", justify="right")
    for r in body.rows:
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
    console.print(f"test split: {body.test_examples} examples, never used to choose")
    for note in body.notes[1:]:
        console.print(f"note: {note}", highlight=False)


def _follow_ensemble_job(
    client: ApiClient, study_id: int, job: EnsembleJobPublic
) -> EnsembleJobPublic:
    """Poll a posted ensemble job until it ends, showing how it goes."""
    began = time.monotonic()
    with console.status(f"ensemble job {job.id} {job.state}") as shown:
        while job.state not in ("done", "failed"):
            time.sleep(0.5)
            job = client.ensemble_job(study_id, job.id)
            where = f" on {job.host} (pid {job.pid})" if job.state == "running" else ""
            shown.update(
                f"ensemble job {job.id} {job.state}{where}, {time.monotonic() - began:.0f} s"
            )
    return job


def status(
    study_id: Annotated[int, typer.Argument(help="study id")] = 1,
    url: UrlOption = "http://127.0.0.1:8765",
    token: TokenOption = None,
    watch: Annotated[bool, typer.Option(help="refresh every 2 s until the study ends")] = False,
) -> None:
    """Stages, ranges, best so far, border flags and warnings of a study."""
    from rich.live import Live

    with ApiClient(url, token) as client:
        if not watch:
            show(_status_view(client, client.study(study_id)))
            return
        with Live(console=console, refresh_per_second=1) as live:
            for study in poll_study(client, study_id, every_s=2):
                live.update(_status_view(client, study))


def _status_view(client: ApiClient, study: StudyDetailPublic) -> Group:
    ranked = client.trials(study.id, limit=5)
    return status_view(study, ranked, failed_trials(client, study.id))


def logs(
    trial: Annotated[int, typer.Argument(help="trial number (as the tables show it)")],
    study_id: Annotated[int, typer.Option("--study", help="study id")] = 1,
    url: UrlOption = "http://127.0.0.1:8765",
    token: TokenOption = None,
) -> None:
    """What a trial's code printed: its stdout and stderr, every attempt."""
    with ApiClient(url, token) as client:
        try:
            text = client.trial_log(study_id, trial)
        except ApiError as exc:
            raise fail(f"{exc.status}: {exc.detail}" if exc.status else str(exc)) from None
    sys.stdout.write(text)


def submit(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC", help="study spec (YAML)")],
    workers: LaunchOption = 0,
    url: UrlOption = "http://127.0.0.1:8765",
    token: TokenOption = None,
    watch: WatchOption = True,
    top: TopOption = 10,
    columns: ColumnsOption = None,
) -> None:
    """Send a study to a running master (a cluster's, from deploy/launch.sh), launch
    workers through its Ray, and follow it to the ranked table."""
    try:
        spec = validate(spec_path)  # the same checks as `run`, before anything is sent
    except GridlessError as exc:
        raise fail(str(exc)) from None
    with ApiClient(url, token) as client:
        study = client.create_study(wire_spec(spec_path, spec))
        base = url.rstrip("/")
        console.print(
            f"study {study.id} ([bold]{study.name}[/]) on {base}: dashboard at "
            f"[link={base}/]{base}/[/link]"
        )
        if workers:
            try:
                started = client.launch_workers(workers).started
            except GridlessError as exc:
                # A study no node can run would stay first in the master's queue and size
                # every later study's workers: it ends here, saying why.
                client.stop_study(study.id)
                raise fail(f"{exc}; study {study.id} was stopped") from None
            console.print("started workers " + ", ".join(started))
        elif (hint := no_worker_hint(client, url)) is not None:
            console.print(hint, highlight=False)
        if not watch:
            console.print(f"follow it with: gridless status {study.id} --watch")
            return
        follow_to_result(client, study.id, top=top, columns=parse_columns(columns))
