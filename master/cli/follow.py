"""The one road from a running study to its result, over HTTP: `run`, `resume`,
`submit`, `extend` and `status --watch` poll the study the same way, `follow` draws the
progress bar and `show_result` prints the ranked table, border flags, warnings, stop
reason, best checkpoint and failures."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from gridless.common.errors import GridlessError
from gridless.common.states import StudyState
from gridless.master.cli.client import ApiClient
from gridless.master.cli.pareto_view import front_line, front_table, is_multi_objective
from gridless.master.cli.render import (
    FAILED_SHOWN,
    console,
    failure_lines,
    flag_lines,
    show,
    stop_line,
    trials_table,
    warning_line,
)
from gridless.master.schemas import StudyDetailPublic, TrialsPublic

__all__ = [
    "POLL_S",
    "ColumnsOption",
    "TopOption",
    "failed_trials",
    "follow",
    "follow_to_result",
    "is_over",
    "no_worker_hint",
    "poll_study",
    "show_result",
]

POLL_S = 0.5  # between two reads of a study's progress

# The options of the commands that print the ranked result (run, resume, submit, extend).
TopOption = Annotated[int, typer.Option(min=1, max=1000, help="rows of the final table")]
ColumnsOption = Annotated[
    str | None,
    typer.Option(help="more metric columns for the table, comma-separated (val_loss,val_r2)"),
]


def is_over(study: StudyDetailPublic, *, ends_on_pause: bool = False) -> bool:
    """Whether following `study` is done: it ended, or gridless paused it (the breaker);
    with `ends_on_pause`, also a pause by a person."""
    if StudyState(study.state).is_finished() or study.state_reason is not None:
        return True
    return ends_on_pause and study.state != StudyState.RUNNING


def poll_study(
    client: ApiClient, study_id: int, *, every_s: float = POLL_S, ends_on_pause: bool = False
) -> Iterator[StudyDetailPublic]:
    """The study as it goes, read every `every_s` seconds; the last one read is over."""
    while True:
        study = client.study(study_id)
        yield study
        if is_over(study, ends_on_pause=ends_on_pause):
            return
        time.sleep(every_s)


def _stage(study: StudyDetailPublic) -> str:
    running = [st.index for st in study.stages if st.state == "running"]
    return f"stage {running[0] + 1}/{len(study.stages)}" if running else "done"


def follow(client: ApiClient, study_id: int, *, own_workers: bool = False) -> None:
    """A progress bar of the study (finished of all trials, the stage running, the best
    score) until it is over.

    Args:
        own_workers: the caller's workers are all the study has (`run`): following ends
            when the study leaves the running state, and fails when every worker ended.

    Raises:
        GridlessError: with `own_workers`, every worker ended before the study did.
    """
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("best {task.fields[best]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("stage 1", total=None, best="-")
        for study in poll_study(client, study_id, ends_on_pause=own_workers):
            best = f"{study.best_score:.4f}" if study.best_score is not None else "-"
            bar.update(
                task,
                completed=study.finished_trials,
                total=study.total_trials,
                description=_stage(study),
                best=best,
            )
            if own_workers and study.state == StudyState.RUNNING and not client.workers().running:
                raise GridlessError("every worker ended before the study finished")


def no_worker_hint(client: ApiClient, url: str) -> str | None:
    """What to do when no worker serves the master (none launched, none alive): the
    study would wait for one forever. None when some worker is there."""
    answer = client.workers()
    if answer.running or any(w.state in ("idle", "busy") for w in answer.data):
        return None
    return (
        "[yellow]no workers[/] are connected to this master, so the study waits: launch "
        f"some with [bold]--workers N[/] or [bold]gridless workers add N --url {url}[/], or "
        "start them on your cluster (deploy/launch.sh); Ctrl-C stops watching, not the study"
    )


def failed_trials(client: ApiClient, study_id: int) -> TrialsPublic:
    """The newest failed trials a summary lists, and how many failed."""
    return client.trials(study_id, limit=FAILED_SHOWN, state="failed", sort="-finished_at")


def show_result(
    client: ApiClient,
    study_id: int,
    *,
    top: int,
    columns: list[str],
    resume: str | None = None,
    new_run: str | None = None,
) -> StudyDetailPublic:
    """The ranked table, border flags, warnings, stop reason, the best trial's best
    checkpoint and what failed (with `resume`, how to go on after a pause); the study."""
    study = client.study(study_id)
    ranked = client.trials(study_id, limit=top)
    if is_multi_objective(study):  # the result is the front, not one score's ranking
        table, front = front_table(client, study, columns)
        show(table)
        console.print(front_line(front, finished=study.finished_trials), highlight=False)
    else:
        show(trials_table(study, ranked, columns))
    for line in flag_lines(study.border_flags):
        console.print(line)
    warned = warning_line(study.warning_counts)
    if warned is not None:
        console.print(warned)
    stopped = stop_line(study)
    if stopped is not None:
        console.print(stopped, highlight=False)
    best = ranked.data[0] if ranked.data and ranked.data[0].best_score is not None else None
    if best is not None:
        # The checkpoint of the epoch the table names (a later epoch may tie its score);
        # the trial's best one left if retention removed that.
        kept = client.checkpoints(study_id, trial=best.number, limit=100).data
        chosen = next((c for c in kept if c.epoch == best.best_epoch), kept[0] if kept else None)
        if chosen is not None:
            where = f"trial {best.number}, epoch {chosen.epoch}"
            console.print(f"best checkpoint ({where}): {escape(chosen.path)}")
            if chosen.epoch != best.best_epoch:
                console.print(
                    f"[yellow]note:[/] trial {best.number}'s best epoch {best.best_epoch} has "
                    "no checkpoint: pass checkpoint= to trial.report (or call trial.save) "
                    "in that epoch",
                    highlight=False,
                )
    failed = failed_trials(client, study_id)
    for line in failure_lines(study, failed, resume=resume, new_run=new_run):
        console.print(line)
    return study


def follow_to_result(client: ApiClient, study_id: int, *, top: int, columns: list[str]) -> None:
    """`submit` and `extend`: the progress bar, then the result; exit 1 when gridless
    paused the study."""
    follow(client, study_id)
    if show_result(client, study_id, top=top, columns=columns).state_reason is not None:
        raise typer.Exit(1)
