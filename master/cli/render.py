"""What the CLI prints: the ranked table, progress bars, a study's status, border flags and
failure summaries, on one stdout and one stderr console."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import typer
from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from gridless.master.cli.client import call

__all__ = [
    "FAILED_SHOWN",
    "console",
    "err",
    "fail",
    "failure_lines",
    "parse_columns",
    "print_flags",
    "ranked_table",
    "remote_failure_lines",
    "stages_table",
    "status_view",
    "trials_table",
    "watch_progress",
]

# Piped output (CI logs, `| tee`) gets a table wide enough not to truncate columns.
_WIDTH = None if sys.stdout.isatty() or "COLUMNS" in os.environ else 140
console = Console(width=_WIDTH)
err = Console(stderr=True, width=_WIDTH)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print `message` as an error on stderr; the exit to raise (`raise fail(...)`)."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def trials_table(
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
            _shown_score(t),
            *shown,
            str(t["best_epoch"] or "-"),
            f"{t['state']} ({t['origin']})" if t.get("origin") else t["state"],
            *values,
            ", ".join(w.get("code", "?") for w in t["warnings"] or []),
        )
    return table


def parse_columns(text: str | None) -> list[str]:
    return [c.strip() for c in (text or "").split(",") if c.strip()]


def _shown_number(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) else "-"


def _shown_score(t: dict[str, Any]) -> str:
    """The trial's best score, and the mean over seeds that ranks it once re-scored."""
    best, selection = t["best_score"], t.get("selection_score")
    shown = _shown_number(best)
    if isinstance(selection, int | float) and isinstance(best, int | float) and selection != best:
        shown += f" (mean {selection:.4f})"
    return shown


def ranked_table(
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
            "selection_score": row.selection_score,
            "number": row.number,
            "stage": stage_index.get(row.stage_id, -1) + 1,
            "best_epoch": row.best_epoch,
            "state": row.state,
            "warnings": row.warnings,
            "origin": row.origin,
            "best_metrics": row.best_metrics,
        }
        for row in rows
    ]
    space = list(study.spec["space"])
    table = trials_table(study.name, study.metric, space, trials, count, columns)
    return table, count


FAILED_SHOWN = 5  # the newest failed trials a summary lists
FAILED_QUERY = {"state": "failed", "limit": FAILED_SHOWN, "sort": "-finished_at"}


def failure_lines(
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


def remote_failure_lines(client: object, study: dict[str, Any]) -> list[str]:
    """`failure_lines` of a study read over the API (`status`, `submit`)."""
    failed = call(client, "GET", f"/studies/{study['id']}/trials", params=FAILED_QUERY)
    assert isinstance(failed, dict)
    return failure_lines(
        int(study["id"]), study.get("state_reason"), failed["data"], failed["count"]
    )


def print_flags(service: object, study_id: int) -> None:
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


def _short(values: list[object]) -> str:
    return "[" + ", ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in values) + "]"


def stages_table(study: dict[str, Any], title: str) -> Table:
    """A study's stages (from its API detail): state, size and ranges."""
    table = Table(title=title)
    for column in ("stage", "state", "trials", "epochs", "ranges"):
        table.add_column(column)
    for st in study["stages"]:
        ranges = (
            "; ".join(f"{k} {_short(next(iter(v.values())))}" for k, v in st["space"].items())
            or "(after the previous stage)"
        )
        table.add_row(
            str(st["index"] + 1), st["state"], str(st["trials"]), str(st["epochs"]), ranges
        )
    return table


def status_view(client: object, study_id: int, top: int = 5) -> Group:
    study = call(client, "GET", f"/studies/{study_id}")
    assert isinstance(study, dict)
    ranked = call(client, "GET", f"/studies/{study_id}/trials", params={"limit": top})
    assert isinstance(ranked, dict)
    best = f"{study['best_score']:.4f}" if study["best_score"] is not None else "-"
    head = (
        f"[bold]{study['name']}[/] ({study['state']}): {study['finished_trials']}/"
        f"{study['total_trials']} trials finished, best {study['metric']} {best}"
    )
    table = stages_table(study, "stages")
    trials = trials_table(
        study["name"],
        study["metric"],
        list(study["spec"]["space"]),
        ranked["data"],
        ranked["count"],
    )
    lines: list[RenderableType] = [head, table, trials]
    if study.get("stop_reason"):
        lines.append(f"[bold]ended by its stop rule[/]: {escape(study['stop_reason'])}")
    warm = study["spec"].get("warm_start")
    if warm:
        ranges = "its ranges" if warm["ranges"] == "old" else "the spec's ranges"
        lines.append(
            f"warm-started from study {warm['study']} ({ranges} for stage 1; its trials "
            "inform TPE, linked, not copied)"
        )
    for st in study["stages"]:
        for d in st["decisions"].get("decisions", []):
            old, new = next(iter(d["old"].values())), next(iter(d["new"].values()))
            step = f"stage {st['index'] + 1} -> {st['index'] + 2}"
            lines.append(f"{step}: {d['param']} {_short(old)} -> {_short(new)} ({d['why']})")
    for flag in study["border_flags"]:
        lines.append(f"[bold yellow]border flag[/] (stage {flag['stage']}): {flag['message']}")
    lines.extend(remote_failure_lines(client, study))
    if study["warning_counts"]:
        lines.append(
            "warnings: " + ", ".join(f"{k} ({v})" for k, v in study["warning_counts"].items())
        )
    return Group(*lines)


def watch_progress(client: object, study_id: int) -> None:
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
            study = call(client, "GET", f"/studies/{study_id}")
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
