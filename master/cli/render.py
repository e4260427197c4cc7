"""What the CLI prints, from the API's own models: the ranked table, a study's stages and
status, border flags, warnings and failure summaries, on one stdout and one stderr console.
Each thing is rendered here once, whichever command shows it."""

from __future__ import annotations

import os
import sys
from typing import Any

import typer
from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.measure import Measurement
from rich.panel import Panel
from rich.table import Table

from gridless.master.schemas import (
    BorderFlagPublic,
    StudyDetailPublic,
    StudyPublic,
    TrialPublic,
    TrialsPublic,
)

__all__ = [
    "FAILED_SHOWN",
    "console",
    "err",
    "fail",
    "failure_lines",
    "flag_lines",
    "parse_columns",
    "show",
    "stages_table",
    "status_view",
    "stop_line",
    "trials_table",
    "warm_line",
    "warning_line",
]

# Piped output (CI logs, `| tee`) wraps its text at 140 columns; its tables are printed
# at their natural width (`show`), however wide, so that no number is cut to an ellipsis.
_WIDTH = None if sys.stdout.isatty() or "COLUMNS" in os.environ else 140
console = Console(width=_WIDTH)
err = Console(stderr=True, width=_WIDTH)


def show(renderable: RenderableType) -> None:
    """Print on stdout; piped, a table as wide as its cells (never cropped)."""
    console.print(renderable, crop=console.is_terminal)


def _natural_width(table: Table) -> Table:
    """Piped output: the table's width is what its cells need, so none is truncated."""
    if not console.is_terminal:
        wide = console.options.update_width(100_000)
        table.width = Measurement.get(console, wide, table).maximum
    return table


FAILED_SHOWN = 5  # the newest failed trials a summary lists


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print `message` as an error on stderr; the exit to raise (`raise fail(...)`)."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def parse_columns(text: str | None) -> list[str]:
    """`--columns val_loss,val_r2` as a list of metric names."""
    return [c.strip() for c in (text or "").split(",") if c.strip()]


def _shown_number(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) else "-"


def _shown_score(t: TrialPublic) -> str:
    """The trial's best score, and the mean over seeds that ranks it once re-scored."""
    shown = _shown_number(t.best_score)
    if t.selection_score is not None and t.best_score is not None:
        if t.selection_score != t.best_score:
            shown += f" (mean {t.selection_score:.4f})"
    return shown


def _short(values: list[object]) -> str:
    return "[" + ", ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in values) + "]"


def trials_table(
    study: StudyPublic,
    page: TrialsPublic,
    columns: list[str] | None = None,
    *,
    title: str | None = None,
) -> Table:
    """The ranked table: one row a trial of `page`, best first; `columns` adds other
    reported metrics (at each trial's best epoch)."""
    params = list(study.spec["space"])
    extra = list(dict.fromkeys(c for c in columns or [] if c != study.metric))
    table = Table(
        title=title
        or f"{study.name}: top {len(page.data)} of {page.count} trials by {study.metric}"
    )
    for column in ("rank", "trial", "stage", study.metric, *extra, "epoch"):
        table.add_column(column, justify="right")
    table.add_column("state")
    for param in params:
        table.add_column(param, justify="right")
    table.add_column("warnings")
    errors = any(t.error and t.state == "failed" for t in page.data)
    if errors:
        table.add_column("error")
    for rank, t in enumerate(page.data, start=1):
        values = []
        for param in params:
            value = (t.params or {}).get(param)
            values.append(f"{value:.3g}" if isinstance(value, float) else str(value))
        shown = [_shown_number((t.best_metrics or {}).get(c)) for c in extra]
        table.add_row(
            str(rank) if t.best_score is not None else "-",
            str(t.number),
            str(t.stage),
            _shown_score(t),
            *shown,
            str(t.best_epoch or "-"),
            f"{t.state} ({t.origin})" if t.origin else t.state,
            *values,
            ", ".join(w.get("code", "?") for w in t.warnings or []),
            *([escape(_first_line(t.error)) if t.state == "failed" else ""] if errors else []),
        )
    return _natural_width(table)


def _first_line(error: str | None) -> str:
    """A failed trial's error as a table shows it: its first line (the exception)."""
    lines = (error or "").strip().splitlines()
    return lines[0][:200] if lines else "no error message"


def stages_table(study: StudyDetailPublic, title: str) -> Table:
    """A study's stages: state, size and ranges."""
    table = Table(title=title)
    for column in ("stage", "state", "trials", "epochs", "ranges"):
        table.add_column(column)
    for st in study.stages:
        ranges = (
            "; ".join(f"{k} {_short(next(iter(v.values())))}" for k, v in st.space.items())
            or "(after the previous stage)"
        )
        table.add_row(str(st.index + 1), st.state, str(st.trials), str(st.epochs), ranges)
    return _natural_width(table)


def flag_lines(flags: list[BorderFlagPublic]) -> list[RenderableType]:
    """Border flags: one line for each the next stage answered by extending its range, and
    a panel for those still on a border when the study ended (the seed: widen, run again)."""
    lines: list[RenderableType] = []
    final = []
    for flag in flags:
        if flag.final:
            final.append(escape(flag.message))
        else:
            where = f"after stage {flag.stage}, range extended"
            if flag.beyond_range:
                where += " [bold]past your range[/]"
            lines.append(f"[yellow]border flag ({where}):[/] {escape(flag.message)}")
    if final:
        body = (
            "\n".join(final) + "\nThe best value may lie beyond the range: widen it and run again."
        )
        lines.append(Panel(body, title="best value still on a border", border_style="bold yellow"))
    return lines


def warning_line(counts: dict[str, int]) -> str | None:
    """How many trials raised each babysitting warning, or None for none."""
    if not counts:
        return None
    return "babysitting warnings (trials): " + ", ".join(f"{c} ({n})" for c, n in counts.items())


def warm_line(warm: dict[str, Any]) -> str:
    """Where a warm-started study came from: a study of this database (linked) or of
    another run (its snapshot, copied)."""
    ranges = "its ranges" if warm.get("ranges", "old") == "old" else "the spec's ranges"
    snap = warm.get("snapshot")
    if isinstance(snap, dict):
        name = snap.get("name") or "(unnamed)"
        where = f" of run {snap['run']}" if snap.get("run") else " of another run"
        return (
            f"warm-started from study {name}{where} ({ranges} for stage 1; "
            f"{len(snap.get('trials') or [])} of its trials inform TPE, copied)"
        )
    return (
        f"warm-started from study {warm.get('study')} ({ranges} for stage 1; its trials "
        "inform TPE, linked, not copied)"
    )


def stop_line(study: StudyPublic) -> str | None:
    """Why a `stop:` rule ended the study, if one did."""
    if study.stop_reason is None:
        return None
    return f"[bold]ended by its stop rule[/]: {escape(study.stop_reason)}"


# A pause whose fix is in the spec: resuming keeps the study's own spec, so only a new
# study (run) takes the fix.
SPEC_FIXES = ("the study's metric", "in the spec's metric")


def failure_lines(
    study: StudyPublic,
    failed: TrialsPublic,
    *,
    resume: str | None = None,
    new_run: str | None = None,
) -> list[str]:
    """What failed, in plain sight: the breaker's reason and how to go on (`resume`, or
    `new_run` when the fix is in the spec, which a resumed study keeps), then the newest
    `failed` trials with the first line of their error, and how many more."""
    lines = []
    if study.state_reason is not None:
        reason = study.state_reason
        if any(fix in reason for fix in SPEC_FIXES):
            again = new_run or "submit the fixed spec as a new study"
            hint = (
                f"the fix is in the spec (its metric): {again}; a resumed study keeps "
                "the spec it started with"
            )
        else:
            resumed = resume or f"POST /api/v1/studies/{study.id}/resume on its master"
            hint = f"after a fix: {resumed}"
        lines.append(f"[bold red]study paused[/]: {escape(reason)}\n{hint}")
    if failed.count:
        lines.append(f"[bold red]failed trials[/] ({failed.count}), newest first:")
        for t in failed.data:
            first = (t.error or "no error message").strip().splitlines()[0]
            lines.append(f"  trial {t.number}: {escape(first[:300])}")
        if failed.count > len(failed.data):
            lines.append(f"  ... and {failed.count - len(failed.data)} more")
        lines.append(
            f"  (every error: GET /api/v1/studies/{study.id}/trials?state=failed; what a "
            "trial printed: gridless logs N)"
        )
    return lines


def status_view(study: StudyDetailPublic, ranked: TrialsPublic, failed: TrialsPublic) -> Group:
    """`gridless status`: progress, stages, the top trials, narrowing decisions, flags,
    failures and warnings."""
    best = _shown_number(study.best_score)
    head = (
        f"[bold]{study.name}[/] ({study.state}): {study.finished_trials}/"
        f"{study.total_trials} trials finished, best {study.metric} {best}"
    )
    lines: list[RenderableType] = [
        head,
        stages_table(study, "stages"),
        trials_table(study, ranked),
    ]
    stopped = stop_line(study)
    if stopped is not None:
        lines.append(stopped)
    warm = study.spec.get("warm_start")
    if warm:
        lines.append(escape(warm_line(warm)))
    for st in study.stages:
        for d in st.decisions.get("decisions", []):
            old, new = next(iter(d["old"].values())), next(iter(d["new"].values()))
            step = f"stage {st.index + 1} -> {st.index + 2}"
            # escaped: rich reads a choice's "[sgd, adam]" as a markup tag and drops it
            line = f"{step}: {d['param']} {_short(old)} -> {_short(new)} ({d['why']})"
            lines.append(escape(line))
    lines.extend(flag_lines(study.border_flags))
    lines.extend(failure_lines(study, failed))
    warned = warning_line(study.warning_counts)
    if warned is not None:
        lines.append(warned)
    return Group(*lines)
