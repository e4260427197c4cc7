"""The export of a study's trials (`GET /studies/{id}/trials?format=csv|json`):
every trial that passes the list's filters, in the list's order, streamed.

The ids are read first, in one query (`StudyService.export_ids`): that is the export's
snapshot. The rows then follow in keyed pages of `PAGE` ids, each read in its own short
transaction with its trials' last-epoch metrics, so a 100,000-trial export holds neither
a long transaction nor every row in memory, and a trial that finishes meanwhile neither
moves nor shows twice.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Sequence
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gridless.common.db import StageRow, StudyRow, TrialRow, session_scope
from gridless.common.jsonsafe import finite_or_none
from gridless.common.space import parse_space
from gridless.master.analysis import last_metrics, param_column, param_names

__all__ = ["FIXED_COLUMNS", "PAGE", "ExportFormat", "error_line", "export_lines", "media_type"]

ExportFormat = Literal["csv", "json"]

PAGE = 1000
FIXED_COLUMNS = ("number", "stage", "state", "origin", "best_score", "best_epoch")


def media_type(fmt: ExportFormat) -> str:
    return "text/csv; charset=utf-8" if fmt == "csv" else "application/json"


def _records(
    s: Session, study: StudyRow, ids: Sequence[int], stages: dict[int, int]
) -> Iterator[dict[str, Any]]:
    """The trials `ids` in that order, each as a record of plain values (parameters
    read out of their JSON by the database, as for the plot points)."""
    columns = {n: param_column(n, d) for n, d in parse_space(study.spec["space"]).items()}
    rows = {
        row[0]: row
        for row in s.execute(
            select(
                TrialRow.id,
                TrialRow.number,
                TrialRow.stage_id,
                TrialRow.state,
                TrialRow.origin,
                TrialRow.best_score,
                TrialRow.best_epoch,
                TrialRow.warnings,
                TrialRow.error,
                *(column for column, _ in columns.values()),
            ).where(TrialRow.id.in_(list(ids)))
        )
    }
    metrics = last_metrics(s, ids)
    converters = [(name, convert) for name, (_, convert) in columns.items()]
    for trial_id in ids:
        row = rows.get(trial_id)
        if row is None:
            continue  # cannot happen: trials are never deleted
        yield {
            "number": row[1],
            "stage": stages[row[2]],
            "state": row[3],
            "origin": row[4],
            "best_score": row[5],
            "best_epoch": row[6],
            "params": {
                name: convert(row[i])
                for i, (name, convert) in enumerate(converters, start=9)
                if row[i] is not None
            },
            "metrics": metrics.get(trial_id, {}),
            "warnings": [str(w.get("code")) for w in row[7] or []],
            "error": error_line(row[8]),
        }


def error_line(error: str | None) -> str | None:
    """The first line of a trial's error (the exception and its message), for a table."""
    if not error or not error.strip():
        return None
    return error.strip().splitlines()[0][:500]


def _json(record: dict[str, Any]) -> str:
    try:
        return json.dumps(record, allow_nan=False)
    except ValueError:  # a non-finite number (none should be stored): null, as everywhere
        return json.dumps(finite_or_none(record), allow_nan=False)


def export_lines(
    sessions: sessionmaker[Session],
    study: StudyRow,
    ids: list[int],
    metric_names: list[str],
    fmt: ExportFormat,
) -> Iterator[str]:
    """The export's text, a page of trials at a time.

    CSV: a header, then one line a trial: `number, stage, state, origin, best_score,
    best_epoch`, `params.<name>` per parameter of the study, `metrics.<name>` per metric
    name the study reported (the trial's last epoch; empty where it lacks one),
    `warnings` (the codes joined by `;`) and `error` (the first line of a failed trial's
    error). JSON: an array of objects with the same fields, `params` and `metrics` as
    objects and `warnings` as a list of codes.
    """
    with session_scope(sessions) as s:
        stages = {
            stage_id: index + 1
            for stage_id, index in s.execute(
                select(StageRow.id, StageRow.index).where(StageRow.study_id == study.id)
            )
        }
    names = param_names(study)
    if fmt == "csv":
        yield _csv_line(
            [
                *FIXED_COLUMNS,
                *(f"params.{n}" for n in names),
                *(f"metrics.{n}" for n in metric_names),
                "warnings",
                "error",
            ]
        )
    else:
        yield "["
    first = True
    for start in range(0, len(ids), PAGE):
        with session_scope(sessions) as s:
            records = list(_records(s, study, ids[start : start + PAGE], stages))
        if fmt == "csv":
            yield "".join(
                _csv_line(
                    [
                        *(r[c] for c in FIXED_COLUMNS),
                        *(r["params"].get(n) for n in names),
                        *(r["metrics"].get(n) for n in metric_names),
                        ";".join(r["warnings"]),
                        r["error"],
                    ]
                )
                for r in records
            )
        else:
            text = ",\n".join(_json(r) for r in records)
            if text:
                yield ("\n" if first else ",\n") + text
                first = False
    if fmt == "json":
        yield "\n]\n" if not first else "]\n"


def _csv_line(values: Sequence[Any]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(["" if v is None else v for v in values])
    return out.getvalue()
