"""The analysis reads of issue 19: every trial as plot columns, parameter importance per
stage and for the whole study, and the SQL aggregations the study detail needs (warning
counts, metric names) so that it stays fast with 100,000 trials.

Importance is Optuna's PED-ANOVA (`optuna.importance.PedAnovaImportanceEvaluator`, Optuna's
default evaluator), fed gridless's scored trials through `optuna.trial.create_trial` with
distributions built from the stage's ranges (log where the space is log). It says how much
each parameter decides whether a trial lands in the top 10% of its set. fANOVA, the other
well-known evaluator, fits a 64-tree forest: 98 s for 2,000 trials on the project's
machines against 0.1 s, so it is not used. Each set is a seeded sample of at most
`MAX_IMPORTANCE_TRIALS` trials, and an answer is cached until another trial finishes.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from sqlalchemy import JSON, ColumnElement, case, cast, func, literal, literal_column, select
from sqlalchemy.orm import Session, sessionmaker

from gridless.common.db import EpochMetricRow, StageRow, StudyRow, TrialRow, session_scope
from gridless.common.metric import BUILTIN_METRICS, merged_metrics
from gridless.common.space import Choice, Distribution, NumericDistribution, parse_space
from gridless.common.states import TrialState
from gridless.master.storage import count_warning_codes

__all__ = [
    "FINISHED_STATES",
    "IMPORTANCE_METHOD",
    "MAX_IMPORTANCE_TRIALS",
    "MIN_IMPORTANCE_TRIALS",
    "Importance",
    "MetricNames",
    "importances",
    "last_metrics",
    "param_names",
    "study_points",
    "warning_counts",
]

log = logging.getLogger(__name__)

FINISHED_STATES = [st.value for st in TrialState if st.is_finished()]
# Trials whose score means what the metric says: failed and diverged ones are left out.
SCORED_STATES = [TrialState.COMPLETED.value, TrialState.STOPPED.value]
IMPORTANCE_METHOD = "PED-ANOVA (optuna.importance.PedAnovaImportanceEvaluator)"
MIN_IMPORTANCE_TRIALS = 4
MAX_IMPORTANCE_TRIALS = 2_000


def param_names(study: StudyRow) -> list[str]:
    """The study's searched parameters, in the spec's order (trials store only these)."""
    return list(study.spec.get("space", {}))


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


# -- plot points --------------------------------------------------------------------------


def _param_column(name: str, dist: Distribution) -> tuple[Any, Callable[[Any], Any]]:
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
    columns = {name: _param_column(name, dist) for name, dist in space.items()}
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


# -- importance ---------------------------------------------------------------------------


def _optuna_distribution(dist: Distribution, seen: Sequence[Any]) -> Any:
    """The Optuna distribution of `dist`, widened to hold every value in `seen` (an
    enqueued configuration may lie outside its stage's range); None for a parameter that
    cannot be told apart (a single value)."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    if isinstance(dist, Choice):
        options = list(dist.options)
        options += [v for v in dict.fromkeys(seen) if v not in options]
        return CategoricalDistribution(options) if len(options) > 1 else None
    assert isinstance(dist, NumericDistribution)
    low, high = min([dist.low, *seen]), max([dist.high, *seen])
    if low == high:
        return None
    if dist.integer:
        return IntDistribution(int(low), int(high), log=dist.log)
    return FloatDistribution(float(low), float(high), log=dist.log)


def _fits(dist: Distribution, value: Any) -> bool:
    """Whether `value` is a value of `dist`'s kind (a number for a range, an integer for
    an integer range, positive on a log scale); the range itself is widened to hold it."""
    if isinstance(dist, Choice):
        return isinstance(value, str | int | float | bool)
    assert isinstance(dist, NumericDistribution)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return False
    if dist.integer and not float(value).is_integer():
        return False
    return value > 0 if dist.log else True


def _union(spaces: Iterable[dict[str, Distribution]]) -> dict[str, Distribution]:
    """One range per parameter that covers every stage's (the study's whole span)."""
    merged: dict[str, Distribution] = {}
    for space in spaces:
        for name, dist in space.items():
            old = merged.setdefault(name, dist)
            if isinstance(dist, Choice) and isinstance(old, Choice):
                extra = [o for o in dist.options if o not in old.options]
                merged[name] = Choice((*old.options, *extra))
            elif isinstance(dist, NumericDistribution) and type(old) is type(dist):
                assert isinstance(old, NumericDistribution)
                merged[name] = dist.with_bounds(min(old.low, dist.low), max(old.high, dist.high))
    return merged


Scored = list[tuple[dict[str, Any], float]]


def importances(
    trials: Scored, space: dict[str, Distribution], *, maximize: bool
) -> tuple[int, dict[str, float] | None, str | None]:
    """PED-ANOVA over (params, score) pairs in `space` (each range widened to hold the
    trials' values; a trial without a value of the right kind for every parameter is
    left out).

    Returns:
        (trials used, importances summing to 1 or None, why None).
    """
    fitting = [
        (params, score)
        for params, score in trials
        if all(name in params and _fits(d, params[name]) for name, d in space.items())
    ]
    if len(fitting) < MIN_IMPORTANCE_TRIALS:
        return len(fitting), None, f"fewer than {MIN_IMPORTANCE_TRIALS} scored trials"
    if len({score for _, score in fitting}) < 2:
        return len(fitting), None, "every scored trial has the same score"
    dists = {
        name: od
        for name, dist in space.items()
        if (od := _optuna_distribution(dist, [p[name] for p, _ in fitting])) is not None
    }
    if not dists:
        return len(fitting), None, "no parameter varies"
    import optuna

    optuna.logging.set_verbosity(logging.WARNING)
    ostudy = optuna.create_study(direction="maximize" if maximize else "minimize")
    ostudy.add_trials(
        [
            optuna.trial.create_trial(
                params={k: params[k] for k in dists}, distributions=dists, value=score
            )
            for params, score in fitting
        ]
    )
    found = optuna.importance.get_param_importances(
        ostudy, evaluator=optuna.importance.PedAnovaImportanceEvaluator(), normalize=True
    )
    values = [float(v) for v in found.values()]
    if not all(math.isfinite(v) for v in values) or not sum(values) > 0:
        return len(fitting), None, "its top 10% of trials does not differ from the rest"
    return len(fitting), {k: float(v) for k, v in found.items()}, None


def _sample(ids: list[int], seed: int) -> list[int]:
    """At most `MAX_IMPORTANCE_TRIALS` of `ids`, drawn with a seeded generator, in order."""
    if len(ids) <= MAX_IMPORTANCE_TRIALS:
        return ids
    picked = np.random.default_rng(seed).choice(len(ids), MAX_IMPORTANCE_TRIALS, replace=False)
    return [ids[int(i)] for i in sorted(picked)]


class Importance:
    """Parameter importance per stage and for the whole study, cached per study until the
    number of finished trials (or of opened stages) changes; one computation at a time,
    outside any database transaction. The cost is bounded: each set is a seeded sample of
    at most `MAX_IMPORTANCE_TRIALS` scored trials, and only their parameters are read."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions
        self._cache: dict[int, tuple[tuple[int, int], dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def of(self, study: StudyRow) -> dict[str, Any]:
        """The `GET /studies/{id}/importance` answer."""
        with self._lock, session_scope(self.sessions) as s:
            stages = list(
                s.scalars(
                    select(StageRow).where(StageRow.study_id == study.id).order_by(StageRow.index)
                )
            )
            finished = s.scalar(
                select(func.count())
                .select_from(TrialRow)
                .where(
                    TrialRow.stage_id.in_([st.id for st in stages]),
                    TrialRow.state.in_(FINISHED_STATES),
                )
            )
            key = (finished or 0, sum(1 for st in stages if st.space))
            cached = self._cache.get(study.id)
            if cached is not None and cached[0] == key:
                return cached[1]
            scored = s.execute(
                select(TrialRow.id, TrialRow.stage_id)
                .where(
                    TrialRow.study_id == study.id,
                    TrialRow.state.in_(SCORED_STATES),
                    TrialRow.best_score.is_not(None),
                )
                .order_by(TrialRow.number)
            ).all()
            ids: dict[int | None, list[int]] = {st.id: [] for st in stages}
            for trial_id, stage_id in scored:
                ids[stage_id].append(trial_id)
            ids[None] = [trial_id for trial_id, _ in scored]  # the whole study
            seed = study.seed % 2**32
            sampled = {key_: _sample(some, seed) for key_, some in ids.items()}
            wanted = sorted({i for some in sampled.values() for i in some})
            points: dict[int, tuple[dict[str, Any], float]] = {}
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                for trial_id, params, score in s.execute(
                    select(TrialRow.id, TrialRow.params, TrialRow.best_score).where(
                        TrialRow.id.in_(chunk)
                    )
                ):
                    points[trial_id] = (params or {}, score)
        sets = {k: ([points[i] for i in some], len(ids[k])) for k, some in sampled.items()}
        answer = self._answer(study, stages, sets)
        with self._lock:
            self._cache[study.id] = (key, answer)
        return answer

    @staticmethod
    def _answer(
        study: StudyRow, stages: list[StageRow], sets: dict[int | None, tuple[Scored, int]]
    ) -> dict[str, Any]:
        notes: list[str] = []

        def one(what: str, key: int | None, space: dict[str, Distribution]) -> dict[str, Any]:
            trials, total = sets[key]
            try:
                used, found, note = importances(trials, space, maximize=study.maximize)
            except Exception as exc:  # Optuna's own limits: say so, never a 500
                log.exception("the importance of %s of study %s failed", what, study.id)
                used, found = len(trials), None
                note = f"PED-ANOVA failed ({type(exc).__name__})"
            if note is None and total > len(trials):
                note = f"a seeded sample of {len(trials):,} of {total:,} scored trials"
            if note is not None:
                notes.append(f"{what}: {note}")
            return {"trials": used, "importances": found}

        spaces = {st.id: parse_space(st.space) for st in stages if st.space}
        per_stage = []
        for st in stages:
            if st.id in spaces:
                answer = one(f"stage {st.index + 1}", st.id, spaces[st.id])
            else:
                answer = {"trials": 0, "importances": None}
                notes.append(f"stage {st.index + 1}: not started")
            per_stage.append({"stage": st.index + 1, **answer})
        whole = one("study", None, _union(spaces.values()))
        return {
            "method": IMPORTANCE_METHOD,
            "study": whole,
            "stages": per_stage,
            "note": "; ".join(notes) or None,
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
    return {row.trial_id: merged_metrics(row, row.metrics) for row in rows}


class MetricNames:
    """Every metric name each study's epochs reported, read incrementally: a call reads
    only the epoch rows added since the last one (their ids only grow: the master's one
    writer commits in order), so the study detail pays for a full scan once per master
    process (about 0.3 s per million epoch rows on SQLite)."""

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
