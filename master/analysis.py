"""The analysis reads: every trial as plot columns, each trial's last-epoch
metrics, and the SQL aggregations the study detail needs (warning counts, metric names)
so that it stays fast with 100,000 trials. Parameter importance is `master.importance`.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import JSON, ColumnElement, case, cast, func, literal, literal_column, select
from sqlalchemy.orm import Session

from gridless.common.db import EpochMetricRow, StageRow, StudyRow, TrialRow
from gridless.common.metric import BUILTIN_METRICS, merged_metrics
from gridless.common.space import Choice, Distribution, NumericDistribution, parse_space
from gridless.common.states import TrialState
from gridless.master.context import count_warning_codes

__all__ = [
    "FINISHED_STATES",
    "MetricNames",
    "last_metrics",
    "param_column",
    "param_names",
    "study_points",
    "warning_counts",
]

FINISHED_STATES = [st.value for st in TrialState if st.is_finished()]


def param_names(study: StudyRow) -> list[str]:
    """The study's searched parameters, in the spec's order (trials store only these)."""
    return list(study.spec.get("space", {}))


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


# -- plot points --------------------------------------------------------------------------


def param_column(name: str, dist: Distribution) -> tuple[Any, Callable[[Any], Any]]:
    """A SQL expression reading parameter `name` out of the trial's JSON as a plain value
    (no JSON decoding per row in Python), and how to turn that value back into the
    parameter's own (an integer, one of the choice's options)."""
    if isinstance(dist, Choice):
        lookup: dict[Any, Any] = {}
        for option in dist.options:  # SQLite hands back the value, PostgreSQL its text
            lookup[json.dumps(option)] = option
        for option in dist.options:
            lookup[str(option)] = lookup[option] = option
        return TrialRow.params[name].as_string(), lambda v: lookup.get(v, v)
    assert isinstance(dist, NumericDistribution)
    if dist.integer:
        return TrialRow.params[name].as_float(), lambda v: None if v is None else int(v)
    return TrialRow.params[name].as_float(), lambda v: v


def study_points(s: Session, study: StudyRow) -> dict[str, Any]:
    """Every trial of the study in columns, one SELECT of plain columns: finished trials in
    the order they finished (`order` 1..k), then the unfinished by number. Failed and
    diverged trials come with their state and a null score."""
    stages = dict(
        s.execute(select(StageRow.id, StageRow.index).where(StageRow.study_id == study.id)).all()
    )
    space = parse_space(study.spec["space"])
    columns = {name: param_column(name, dist) for name, dist in space.items()}
    finished = TrialRow.state.in_(FINISHED_STATES)
    rows = s.execute(
        select(
            TrialRow.number,
            TrialRow.stage_id,
            TrialRow.state,
            TrialRow.origin,
            TrialRow.best_score,
            *(column for column, _ in columns.values()),
        )
        .where(TrialRow.study_id == study.id)
        .order_by(
            case((finished, 0), else_=1),
            TrialRow.finished_at.asc().nulls_last(),
            TrialRow.number,
        )
    ).all()
    unscored = {TrialState.FAILED.value, TrialState.DIVERGED.value}
    done = sum(1 for row in rows if row.state in FINISHED_STATES)  # they come first
    values = {}
    for i, (name, (_, convert)) in enumerate(columns.items(), start=5):
        values[name] = [convert(row[i]) for row in rows]
    return {
        "count": len(rows),
        "params": list(columns),
        "number": [row.number for row in rows],
        "stage": [stages[row.stage_id] + 1 for row in rows],
        "state": [row.state for row in rows],
        "origin": [row.origin for row in rows],
        "score": [None if r.state in unscored else _finite(r.best_score) for r in rows],
        "order": [i + 1 if i < done else None for i in range(len(rows))],
        "values": values,
    }


# -- the study detail's aggregations ------------------------------------------------------


def _typed(column: Any, dialect: str, kind: str) -> ColumnElement[Any]:
    """`column` when its JSON value is of `kind` (array, object), else an empty one: the
    JSON functions of PostgreSQL raise on a scalar (a JSON null)."""
    if dialect == "postgresql":
        empty = cast(literal("[]" if kind == "array" else "{}"), JSON)
        return case((func.json_typeof(column) == kind, column), else_=empty)
    return case((func.json_type(column) == kind, column), else_="[]" if kind == "array" else "{}")


def warning_counts(s: Session, study_id: int) -> dict[str, int]:
    """How many trials of a study raised each warning code (a trial counts once per
    code), in one SQL aggregation over the JSON lists (SQLite, PostgreSQL)."""
    dialect = s.get_bind().dialect.name
    lists = _typed(TrialRow.warnings, dialect, "array")
    code: ColumnElement[Any]
    if dialect == "sqlite":
        each = func.json_each(lists).table_valued("value", "type").alias("w")
        code, on = func.json_extract(each.c.value, literal_column("'$.code'")), each.c.type
        joined = select(code).select_from(TrialRow).join(each, on == "object")
    elif dialect == "postgresql":
        item = func.json_array_elements(lists).table_valued("value").alias("w")
        code = item.c.value.op("->>")(literal_column("'code'"))
        joined = select(code).select_from(TrialRow).join(item, code.is_not(None))
    else:  # another database: read the lists
        rows = s.scalars(select(TrialRow.warnings).where(TrialRow.study_id == study_id))
        return count_warning_codes(rows)
    query = (
        joined.add_columns(func.count(TrialRow.id.distinct()))
        .where(TrialRow.study_id == study_id, code.is_not(None))
        .group_by(code)
    )
    return dict(sorted((str(c), int(n)) for c, n in s.execute(query)))


def last_metrics(s: Session, trial_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Each trial's metrics at its last reported epoch (every name it reported, built-in
    or its own), by trial id: one query on the (trial, epoch) index."""
    if not trial_ids:
        return {}
    em = EpochMetricRow
    rows = s.execute(
        select(em.trial_id, em.metrics, *(getattr(em, name) for name in BUILTIN_METRICS))
        .join(TrialRow, (TrialRow.id == em.trial_id) & (TrialRow.last_epoch == em.epoch))
        .where(TrialRow.id.in_(list(trial_ids)))
    ).all()
    # A row's `metrics` holds every name it reported, built-in ones included; rows from
    # before revision 0004 have only the four columns.
    return {
        row.trial_id: row.metrics if row.metrics is not None else merged_metrics(row, None)
        for row in rows
    }


class MetricNames:
    """Every metric name each study's epochs reported, read incrementally: a call reads
    only the epoch rows added since the last one (their ids only grow: the master's one
    writer commits in order), so the study detail pays for a full scan once per master
    process: 0.25 to 0.65 s for 200,000 epoch rows on SQLite (the first study detail of
    a 100,000-trial study, on this project's loaded 2-core machine)."""

    def __init__(self) -> None:
        self._seen_up_to = 0  # every epoch row with an id up to this one is counted
        self._names: dict[int, set[str]] = {}
        self._lock = threading.Lock()

    def names(self, s: Session, study_id: int) -> list[str]:
        with self._lock:
            top = s.scalar(select(func.max(EpochMetricRow.id))) or 0
            if top > self._seen_up_to:
                for study, name in self._scan(s, self._seen_up_to, top):
                    self._names.setdefault(int(study), set()).add(str(name))
                self._seen_up_to = top
            return sorted(self._names.get(study_id, ()))

    @staticmethod
    def _scan(s: Session, after: int, upto: int) -> list[tuple[int, str]]:
        """(study id, metric name) of the epoch rows with ids in (after, upto]."""
        em = EpochMetricRow
        dialect = s.get_bind().dialect.name
        window = (
            select(TrialRow.study_id)
            .select_from(em)
            .join(TrialRow, TrialRow.id == em.trial_id)
            .where(em.id > after, em.id <= upto)
        )
        found: list[tuple[int, str]] = []
        named = _typed(em.metrics, dialect, "object")
        if dialect == "sqlite":
            each = func.json_each(named).table_valued("key").alias("k")
            query = window.add_columns(each.c.key).join(each, each.c.key.is_not(None))
            found += s.execute(query.distinct())
        elif dialect == "postgresql":
            found += s.execute(window.add_columns(func.json_object_keys(named)).distinct())
        else:  # another database: read the dictionaries
            for study, metrics in s.execute(window.add_columns(em.metrics)):
                found += [(study, name) for name in metrics or {}]
        # Rows from before revision 0004 hold only the four built-in columns.
        old = window.add_columns(*(func.count(getattr(em, n)) for n in BUILTIN_METRICS))
        old = old.where(em.metrics.is_(None)).group_by(TrialRow.study_id)
        for study, *counts in s.execute(old):
            found += [(study, n) for n, c in zip(BUILTIN_METRICS, counts, strict=True) if c]
        return found
