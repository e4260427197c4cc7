"""Parameter importance: how much each parameter decides whether a trial
lands in the top 10% of its set, per stage and for the whole study.

It is Optuna's PED-ANOVA (`optuna.importance.PedAnovaImportanceEvaluator`, Optuna's
default evaluator), fed gridless's scored trials through `optuna.trial.create_trial` with
distributions built from the stage's ranges (log where the space is log). fANOVA, the
other well-known evaluator, fits a 64-tree forest: 237 s for 2,000 trials of 5 parameters
on the project's (loaded) 2-core machine against PED-ANOVA's 0.03 s (`python -m
benchmarks.importance`), so it is not used. Each set is a seeded sample of at most
`MAX_IMPORTANCE_TRIALS` trials, and an answer is cached until another trial finishes.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from gridless.common.db import StageRow, StudyRow, TrialRow, session_scope
from gridless.common.metric import Metric
from gridless.common.space import Choice, Distribution, NumericDistribution, parse_space
from gridless.common.states import TrialState
from gridless.master.analysis import FINISHED_STATES

__all__ = [
    "IMPORTANCE_METHOD",
    "MAX_IMPORTANCE_TRIALS",
    "MIN_IMPORTANCE_TRIALS",
    "Importance",
    "importances",
]

log = logging.getLogger(__name__)

# Trials whose score means what the metric says: failed and diverged ones are left out.
SCORED_STATES = [TrialState.COMPLETED.value, TrialState.STOPPED.value]
IMPORTANCE_METHOD = "PED-ANOVA (optuna.importance.PedAnovaImportanceEvaluator)"
MIN_IMPORTANCE_TRIALS = 4
MAX_IMPORTANCE_TRIALS = 2_000


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
    trials: Scored, space: dict[str, Distribution], *, objective: Metric
) -> tuple[int, dict[str, float] | None, str | None]:
    """PED-ANOVA over (params, score) pairs in `space` (each range widened to hold the
    trials' values; a trial without a value of the right kind for every parameter is
    left out).

    Returns:
        (trials used, importances summing to 1 or None, why None).
    """
    # PED-ANOVA needs every parameter in every trial: a conditional one (`when:`) is
    # absent from some, so only the unconditional parameters are weighed
    space = {name: d for name, d in space.items() if not d.when}
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
    ostudy = optuna.create_study(direction=objective.direction)
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
                used, found, note = importances(trials, space, objective=study.objective)
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
