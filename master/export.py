"""The export of a study's trials (`GET /studies/{id}/trials?format=csv|json`, issue 19):
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
from gridless.master.analysis import last_metrics, param_names

__all__ = ["FIXED_COLUMNS", "PAGE", "ExportFormat", "export_lines", "media_type"]

ExportFormat = Literal["csv", "json"]

PAGE = 1000
FIXED_COLUMNS = ("number", "stage", "state", "origin", "best_score", "best_epoch")


def media_type(fmt: ExportFormat) -> str:
    return "text/csv; charset=utf-8" if fmt == "csv" else "application/json"


def _records(s: Session, ids: Sequence[int], stages: dict[int, int]) -> Iterator[dict[str, Any]]:
    """The trials `ids` in that order, each as a record of plain values."""
    rows = {
        row.id: row
        for row in s.execute(
            select(
                TrialRow.id,
                TrialRow.number,
                TrialRow.stage_id,
                TrialRow.state,
                TrialRow.origin,
                TrialRow.best_score,
                TrialRow.best_epoch,
                TrialRow.params,
                TrialRow.warnings,
            ).where(TrialRow.id.in_(list(ids)))
        )
    }
    metrics = last_metrics(s, ids)
    for trial_id in ids:
        row = rows.get(trial_id)
        if row is None:
            continue  # cannot happen: trials are never deleted
        yield {
            "number": row.number,
            "stage": stages[row.stage_id],
            "state": row.state,
            "origin": row.origin,
            "best_score": row.best_score,
            "best_epoch": row.best_epoch,
            "params": row.params or {},
            "metrics": finite_or_none(metrics.get(trial_id, {})),
            "warnings": [str(w.get("code")) for w in row.warnings or []],
        }


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
    name the study reported (the trial's last epoch; empty where it lacks one), and
    `warnings` (the codes joined by `;`). JSON: an array of objects with the same fields,
    `params` and `metrics` as objects and `warnings` as a list of codes.
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
            ]
        )
    else:
        yield "["
    first = True
    for start in range(0, len(ids), PAGE):
        with session_scope(sessions) as s:
            records = list(_records(s, ids[start : start + PAGE], stages))
        if fmt == "csv":
            yield "".join(
                _csv_line(
                    [
                        *(r[c] for c in FIXED_COLUMNS),
                        *(r["params"].get(n) for n in names),
                        *(r["metrics"].get(n) for n in metric_names),
                        ";".join(r["warnings"]),
                    ]
                )
                for r in records
            )
        else:
            text = ",\n".join(json.dumps(r, allow_nan=False) for r in records)
            if text:
                yield ("\n" if first else ",\n") + text
                first = False
    if fmt == "json":
        yield "\n]\n" if not first else "]\n"


def _csv_line(values: Sequence[Any]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(["" if v is None else v for v in values])
    return out.getvalue()
