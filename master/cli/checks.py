"""`gridless check`, and the checks of a spec that every command starting a study makes
first: its schema and space, the model or train function, the preflight."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import yaml
from rich.markup import escape
from rich.table import Table

from gridless.common.errors import GridlessError
from gridless.common.spec import StudySpec, load_spec, parse_spec
from gridless.master.cli.render import console, fail

if TYPE_CHECKING:
    from gridless.worker.diagnostics.preflight import PreflightReport

__all__ = [
    "check",
    "import_paths",
    "print_preflight",
    "run_preflight",
    "validate",
    "wire_spec",
    "with_snapshot",
]


# What `center_params` takes: a choice has no center, so its first option stands in.
CENTER = "the center of the space (each range's middle, each choice's first option)"


def import_paths(spec_path: Path) -> list[str]:
    """Where custom models are imported from: the spec's folder and the working directory."""
    return list(dict.fromkeys([str(spec_path.resolve().parent), str(Path.cwd())]))


def validate(spec_path: Path) -> StudySpec:
    """Load and check a spec: schema, space, the model and its hyperparameter names."""
    from gridless.worker.function_runner import load_train_function
    from gridless.worker.trainer import check_params, custom_factory

    spec = load_spec(spec_path)
    if spec.warm_start is not None and spec.warm_start.run is not None:
        spec = with_snapshot(spec, spec_path)
    for note in spec.outside_range():  # allowed: a known-good value beyond the space
        console.print(f"[yellow]note:[/] {escape(note)}; it runs as given", highlight=False)
    try:
        if spec.train is not None:
            sys.path[:0] = [p for p in import_paths(spec_path) if p not in sys.path]
            hooks = {"train": spec.train, "predict": spec.predict, "evaluate": spec.evaluate}
            for role, target in hooks.items():
                if target is not None:
                    load_train_function(target, role=role)
            return spec
        check_params(spec.model, set(spec.space) | set(spec.fixed))
        if ":" in spec.model:
            sys.path[:0] = [p for p in import_paths(spec_path) if p not in sys.path]
            custom_factory(spec.model)
    except ValueError as exc:
        raise GridlessError(f"{spec_path}: {exc}") from None
    return spec


def with_snapshot(spec: StudySpec, spec_path: Path) -> StudySpec:
    """`warm_start: {run: PATH}` read here into a snapshot the master can use: the old
    run's study (the newest, or `study:`), its last ranges and its scored trials; a spec
    without one as it is.

    Raises:
        GridlessError: no run there, or no such study in it.
    """
    from sqlalchemy import select

    from gridless.common.db import (
        StageRow,
        StudyRow,
        TrialRow,
        make_engine,
        make_session_factory,
        session_scope,
    )
    from gridless.common.settings import run_paths

    warm = spec.warm_start
    if warm is None or warm.run is None:
        return spec
    folder = Path(warm.run)
    folder = folder if folder.is_absolute() else spec_path.resolve().parent / folder
    db_path, _ = run_paths(folder)
    if not db_path.is_file():
        raise GridlessError(f"warm_start.run: {folder} holds no run (no gridless.db)")
    engine = make_engine(f"sqlite:///{db_path}")
    try:
        with session_scope(make_session_factory(engine)) as s:
            query = select(StudyRow).order_by(StudyRow.id.desc())
            if warm.study is not None:
                query = select(StudyRow).where(StudyRow.id == warm.study)
            old = s.scalar(query.limit(1))
            if old is None:
                raise GridlessError(f"warm_start.run: {folder} has no study {warm.study or ''}")
            spaces = [
                space
                for space in s.scalars(
                    select(StageRow.space)
                    .where(StageRow.study_id == old.id)
                    .order_by(StageRow.index)
                )
                if space
            ]
            trials = [
                {"params": t.params, "score": t.best_score}
                for t in s.scalars(
                    select(TrialRow).where(
                        TrialRow.study_id == old.id,
                        TrialRow.best_score.is_not(None),
                        TrialRow.state.in_(["completed", "stopped"]),
                    )
                )
            ]
            snapshot = {
                "model": old.spec.get("train") or old.spec["model"],
                "metric": old.metric,
                "maximize": old.maximize,
                "ranges": spaces[-1] if spaces else old.spec["space"],
                "trials": trials,
                "name": old.name,
                "run": str(folder),
            }
    finally:
        engine.dispose()
    raw = spec.model_dump(mode="json", exclude_unset=True)
    raw["warm_start"] = {"snapshot": snapshot, "ranges": warm.ranges}
    return parse_spec(raw)


def wire_spec(spec_path: Path, spec: StudySpec) -> dict[str, Any]:
    """What `run` and `submit` send a master for the spec at `spec_path` (validated as
    `spec`): the YAML as written, a `run:` warm start replaced by its snapshot."""
    raw: dict[str, Any] = yaml.safe_load(spec_path.read_text(encoding="utf-8"))
    if spec.warm_start is not None:
        raw["warm_start"] = spec.warm_start.model_dump(mode="json", exclude_none=True)
    return raw


def run_preflight(spec: StudySpec) -> PreflightReport:
    """The preflight of `spec`'s model at the center of its space, behind a spinner."""
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
    console.print(f"[bold]check[/] of {report.train} at {CENTER}: {shown}", highlight=False)
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


def print_preflight(report: PreflightReport) -> None:
    """The preflight's gradient check, sanity checks, notes and verdict."""
    shown = ", ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in report.params.items()
    )
    console.print(f"[bold]preflight[/] of {report.model} at {CENTER}: {shown}", highlight=False)
    if report.gradcheck is not None:
        _print_gradcheck(report.gradcheck)
    for result in report.sanity:
        mark = "[green]pass[/]" if result.passed else "[bold red]FAIL[/]"
        console.print(f"{mark}  {result.name}: {result.detail}")
    for note in report.notes:
        console.print(f"[yellow]note:[/] {note}")
    verdict = "[bold green]all checks pass[/]" if report.passed else "[bold red]checks failed[/]"
    console.print(verdict)


def check(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC", help="study spec (YAML)")],
) -> None:
    """Gradient check and sanity checks of a study's model (the preflight of `run`)."""
    try:
        spec = validate(spec_path)
    except GridlessError as exc:
        raise fail(str(exc)) from None
    if spec.train is not None:
        if not _smoke(spec):
            raise typer.Exit(1)
        return
    report = run_preflight(spec)
    print_preflight(report)
    if not report.passed:
        raise typer.Exit(1)
