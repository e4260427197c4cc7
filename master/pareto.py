"""The Pareto front of a multi-objective study (`metric: [{name, mode}, ...]`).

A finished trial is on the front when no other finished trial is at least as good on
every objective and better on one. Each trial's values are those of its best epoch by the
first (primary) objective: its `best_score` and, for the others, `best_metrics` at that
epoch, the epoch whose checkpoint the trial keeps. A trial that reported no finite value
of some objective is not compared. The front, best first by the first objective, is the
study's result (API, CLI, dashboard) and what the next stage's ranges span (narrowing
around the front instead of the top trials by one score).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from gridless.common.db import StageRow, StudyRow, TrialRow
from gridless.common.metric import Metric, parse_objectives
from gridless.common.states import TrialState

__all__ = [
    "compared_trials",
    "front_of_stage",
    "non_dominated",
    "objective_values",
    "study_front",
    "study_objectives",
]

T = TypeVar("T")

_FINISHED = [TrialState.COMPLETED.value, TrialState.STOPPED.value]


def non_dominated(values: Sequence[Sequence[float]], signs: Sequence[float]) -> list[int]:
    """The indices of the rows no other row dominates, best first by the first column.

    Args:
        values: shape (n, k), one row a trial, one column an objective.
        signs: k of +1 (larger is better) or -1 (smaller is better).

    Rows are visited in lexicographic order, best first; a row is dominated exactly when
    a front row seen before it dominates it (whatever dominates it comes earlier in that
    order, and is itself on the front or dominated by a front row), so the sweep costs
    O(n * front) and never compares all pairs. Equal rows dominate neither each other.
    """
    v = np.asarray(values, dtype=float).reshape(len(values), len(signs)) * np.asarray(signs)
    if len(v) == 0:
        return []
    # np.lexsort sorts by its last key first: the first objective, descending
    order = np.lexsort(tuple(-v[:, c] for c in reversed(range(v.shape[1]))))
    front: list[int] = []
    for i in order:
        if front:
            f = v[front]
            if np.any(np.all(f >= v[i], axis=1) & np.any(f > v[i], axis=1)):
                continue
        front.append(int(i))
    return front


def study_objectives(study: StudyRow) -> tuple[Metric, ...]:
    """The study's objectives, the primary first (one for a single-metric study)."""
    return parse_objectives(study.spec.get("metric", study.metric))


def objective_values(
    objectives: Sequence[Metric], score: float | None, metrics: Mapping[str, Any] | None
) -> tuple[float, ...] | None:
    """A trial's values of every objective (the primary one is `score`), or None when one
    is missing or not finite."""
    values = [score]
    values += [objective.score(metrics or {}) for objective in objectives[1:]]
    if any(v is None or not math.isfinite(v) for v in values):
        return None
    return tuple(float(v) for v in values if v is not None)


def _front(
    objectives: Sequence[Metric], items: Sequence[tuple[T, float | None, Mapping[str, Any] | None]]
) -> list[tuple[T, tuple[float, ...]]]:
    """The items (key, score, metrics) on the front, best first by the first objective."""
    scored = [
        (key, vals)
        for key, score, metrics in items
        if (vals := objective_values(objectives, score, metrics)) is not None
    ]
    front = non_dominated([vals for _, vals in scored], [o.sign for o in objectives])
    return [scored[i] for i in front]


def compared_trials(s: Session, study: StudyRow) -> list[tuple[int, int, tuple[float, ...]]]:
    """(id, number, objective values) of every finished trial with a value of every
    objective, by number: what the front is chosen from (and what the dashboard plots)."""
    objectives = study_objectives(study)
    rows = s.execute(
        select(TrialRow.id, TrialRow.number, TrialRow.best_score, TrialRow.best_metrics)
        .where(
            TrialRow.study_id == study.id,
            TrialRow.state.in_(_FINISHED),
            TrialRow.best_score.is_not(None),
        )
        .order_by(TrialRow.number)
    ).all()
    found = []
    for row in rows:
        values = objective_values(objectives, row.best_score, row.best_metrics)
        if values is not None:
            found.append((row.id, row.number, values))
    return found


def study_front(s: Session, study: StudyRow) -> list[tuple[TrialRow, tuple[float, ...]]]:
    """The study's finished trials on its Pareto front with their objective values, best
    first by the first objective; empty for a single-objective study."""
    objectives = study_objectives(study)
    if len(objectives) < 2:
        return []
    compared = compared_trials(s, study)
    front = [
        (compared[i][0], compared[i][2])
        for i in non_dominated([values for _, _, values in compared], [o.sign for o in objectives])
    ]
    trials = {
        t.id: t for t in s.scalars(select(TrialRow).where(TrialRow.id.in_([i for i, _ in front])))
    }
    return [(trials[i], vals) for i, vals in front]


def front_of_stage(
    s: Session, study: StudyRow, stage: StageRow, ranked: Sequence[tuple[int, T]]
) -> list[tuple[int, T]]:
    """Of a stage's usable trials `ranked` (trial number, outcome), those on the stage's
    Pareto front, for the narrowing to span; empty for a single-objective study (or when
    no trial has every objective), so that the caller keeps its top trials."""
    objectives = study_objectives(study)
    if len(objectives) < 2 or not ranked:
        return []
    numbers = [n for n, _ in ranked]
    rows = s.execute(
        select(TrialRow.number, TrialRow.best_score, TrialRow.best_metrics).where(
            TrialRow.stage_id == stage.id, TrialRow.number.in_(numbers)
        )
    ).all()
    on_front = {
        n for n, _ in _front(objectives, [(r.number, r.best_score, r.best_metrics) for r in rows])
    }
    return [(n, o) for n, o in ranked if n in on_front]
