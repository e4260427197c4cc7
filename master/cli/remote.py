"""The commands to a running master, over its REST API: `submit`, `status`, `logs`,
`workers ls|add|kill`, `checkpoints ls|show|get` and `ensemble`."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from gridless.common.errors import GridlessError
from gridless.master.cli.checks import validate
from gridless.master.cli.client import TokenOption, UrlOption, api, call
from gridless.master.cli.render import (
    console,
    fail,
    parse_columns,
    remote_failure_lines,
    status_view,
    trials_table,
    watch_progress,
)
from gridless.master.schemas import EnsembleJobPublic

__all__ = [
    "ColumnsOption",
    "LaunchOption",
    "TopOption",
    "WatchOption",
    "checkpoints_app",
    "ensemble",
    "follow_to_table",
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
TopOption = Annotated[int, typer.Option(min=1, max=1000, help="rows of the final table")]
ColumnsOption = Annotated[
    str | None,
    typer.Option(help="more metric columns for the table, comma-separated (val_loss,val_r2)"),
]


workers_app = typer.Typer(help="Launch, kill and list the workers of a running master.")


@workers_app.command("ls")
def workers_ls(url: UrlOption = "http://127.0.0.1:8765", token: TokenOption = None) -> None:
    """List workers: state, current trial, last heartbeat."""
    body = call(api(url, token), "GET", "/workers")
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
    body = call(api(url, token), "POST", "/workers", json={"count": count})
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
        raise fail("name one worker id, or pass --all")
    path = "/workers" if all_ else f"/workers/{worker_id}"
    body = call(api(url, token), "DELETE", path)
    assert isinstance(body, dict)
    console.print("killed " + (", ".join(body["killed"]) or "none"))


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
    params: dict[str, object] = {"limit": limit}
    if trial is not None:
        params["trial"] = trial
    client = api(url, token)
    try:
        body = call(client, "GET", f"/studies/{study_id}/checkpoints", params=params)
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

    body = call(api(url, token), "GET", "/checkpoints/meta", params={"path": path})
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

    client = api(url, token)
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
    client = api(url, token)
    request: dict[str, Any] = {"k": k, "retrain": not no_retrain}
    request.update({key: v for key, v in (("predict", predict), ("evaluate", evaluate)) if v})
    try:
        job = _follow_ensemble_job(client, study_id, request)
    finally:
        client.close()  # type: ignore[attr-defined]
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
    client: object, study_id: int, request: dict[str, Any]
) -> EnsembleJobPublic:
    """Post the build, then poll its job until it ends, showing how it goes."""
    posted = call(client, "POST", f"/studies/{study_id}/ensembles", json=request)
    job = EnsembleJobPublic.model_validate(posted)
    began = time.monotonic()
    with console.status(f"ensemble job {job.id} {job.state}") as shown:
        while job.state not in ("done", "failed"):
            time.sleep(0.5)
            answer = call(client, "GET", f"/studies/{study_id}/ensembles/jobs/{job.id}")
            job = EnsembleJobPublic.model_validate(answer)
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

    client = api(url, token)
    try:
        if not watch:
            console.print(status_view(client, study_id))
            return
        with Live(status_view(client, study_id), console=console, refresh_per_second=1) as live:
            while True:
                time.sleep(2)
                live.update(status_view(client, study_id))
                study = call(client, "GET", f"/studies/{study_id}")
                assert isinstance(study, dict)
                if study["state"] in ("completed", "stopped") or study.get("state_reason"):
                    break
    finally:
        client.close()  # type: ignore[attr-defined]


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
        raise fail(f"cannot reach the master at {url}: {exc.__class__.__name__}") from None
    if answer.status_code != 200:
        raise fail(f"{answer.status_code}: {answer.json().get('detail', answer.text)}")
    sys.stdout.write(answer.text)


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
    import yaml

    try:
        spec = validate(spec_path)  # the same checks as `run`, before anything is sent
    except GridlessError as exc:
        raise fail(str(exc)) from None
    raw = yaml.safe_load(spec_path.read_text(encoding="utf-8"))
    if spec.warm_start is not None:  # a run: PATH warm start, read here into a snapshot
        raw["warm_start"] = spec.warm_start.model_dump(mode="json", exclude_none=True)
    client = api(url, token)
    study = call(client, "POST", "/studies", json=raw)
    assert isinstance(study, dict)
    base = url.rstrip("/")
    console.print(
        f"study {study['id']} ([bold]{study['name']}[/]) on {base}: dashboard at "
        f"[link={base}/]{base}/[/link]"
    )
    if workers:
        try:
            started = call(client, "POST", "/workers", json={"count": workers})
        except GridlessError as exc:
            # A study no node can run would stay first in the master's queue and size every
            # later study's workers: it ends here, saying why.
            call(client, "POST", f"/studies/{study['id']}/stop")
            raise fail(f"{exc}; study {study['id']} was stopped") from None
        assert isinstance(started, dict)
        console.print("started workers " + ", ".join(started["started"]))
    if not watch:
        console.print(f"follow it with: gridless status {study['id']} --watch")
        return
    follow_to_table(client, int(study["id"]), top, columns)


def follow_to_table(client: object, study_id: int, top: int, columns: str | None) -> None:
    """The progress bar until the study ends, then its ranked table, flags and failures."""
    watch_progress(client, study_id)
    trials = call(client, "GET", f"/studies/{study_id}/trials", params={"limit": top})
    detail = call(client, "GET", f"/studies/{study_id}")
    assert isinstance(trials, dict)
    assert isinstance(detail, dict)
    params = list(detail["spec"]["space"])
    console.print(
        trials_table(
            detail["name"],
            detail["metric"],
            params,
            trials["data"],
            trials["count"],
            parse_columns(columns),
        )
    )
    for flag in detail["border_flags"]:
        console.print(f"[bold yellow]border flag[/] (stage {flag['stage']}): {flag['message']}")
    if detail.get("stop_reason"):
        console.print(f"[bold]ended by its stop rule[/]: {detail['stop_reason']}", highlight=False)
    for line in remote_failure_lines(client, detail):
        console.print(line)
    if detail.get("state_reason"):
        raise typer.Exit(1)
