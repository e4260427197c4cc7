"""The optional Bayesian sampler: Optuna's TPE used as a library (`sampler: tpe`).

For each new trial of a stage, an in-memory Optuna study is rebuilt from the finished
trials of that stage (so a restarted master needs no extra state), seeded from the study
seed and the trial number, and asked once for parameters in the stage's (narrowed)
ranges. Running trials are not told to TPE; with few workers that costs little. Random
sampling stays the default; with fewer finished trials than TPE's start-up count, TPE
itself samples at random.

Diverged and failed trials are evidence (issue 20): TPE gets them as *infeasible* trials,
through Optuna's own constraint API (`create_trial(constraints=...)`, the constraint
stored on the frozen trial, which Optuna 5's TPE reads without a `constraints_func`).
Its split puts every infeasible trial after every feasible one, so they shape the "bad"
density and TPE stops proposing learning rates where trials diverge. Chosen over giving
them the worst value: a diverged trial has no score to rank (and the worst of a
`val_loss` is unbounded), and the constraint keeps the feasible trials' values as they
are. Left blind, TPE proposed learning rates of 1 to 10 in 21-31 of 50 first-stage trials.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gridless.common.db import StageRow, StudyRow, TrialRow
from gridless.common.metric import Metric
from gridless.common.space import (
    Choice,
    Distribution,
    IntLogUniform,
    IntUniform,
    LogUniform,
    Uniform,
    active_names,
    is_conditional,
    parse_space,
    suggest_params,
)
from gridless.common.states import TrialState

__all__ = ["INFEASIBLE", "TpePoint", "suggest_tpe", "to_optuna", "tpe_sampler", "tpe_study"]

# The constraint an infeasible trial carries (> 0 violates it).
INFEASIBLE = "diverged_or_failed"


def to_optuna(dist: Distribution) -> Any:
    """The Optuna distribution of a gridless one (same bounds, same scale)."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    if isinstance(dist, Choice):
        return CategoricalDistribution(list(dist.options))
    if isinstance(dist, IntLogUniform | IntUniform):
        return IntDistribution(int(dist.low), int(dist.high), log=isinstance(dist, IntLogUniform))
    if isinstance(dist, LogUniform | Uniform):
        return FloatDistribution(dist.low, dist.high, log=isinstance(dist, LogUniform))
    raise TypeError(f"no Optuna distribution for {dist!r}")


def tpe_sampler(dists: Mapping[str, Distribution], *, seed: int) -> Any:
    """Optuna's TPE; for a conditional space (`when:`) the multivariate TPE that groups
    trials by the parameters they have (`multivariate=True, group=True`), which Optuna
    recommends for define-by-run conditional spaces."""
    import optuna

    if not is_conditional(dists):
        return optuna.samplers.TPESampler(seed=seed % 2**32)
    with warnings.catch_warnings():  # both arguments are marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed % 2**32, multivariate=True, group=True)


@dataclass(frozen=True)
class TpePoint:
    """One finished trial as TPE learns from it."""

    params: Mapping[str, Any]
    score: float | None
    feasible: bool = True  # False: it diverged or failed


def tpe_study(
    points: Sequence[TpePoint], dists: Mapping[str, Distribution], *, objective: Metric, seed: int
) -> Any:
    """An in-memory Optuna study holding `points` that lie inside `dists`: scored
    trials as they are, diverged and failed ones as infeasible (constraint 1.0)."""
    import optuna

    optuna.logging.set_verbosity(logging.WARNING)
    space = {name: to_optuna(d) for name, d in dists.items()}
    sampler = tpe_sampler(dists, seed=seed)
    study = optuna.create_study(direction=objective.direction, sampler=sampler)
    scores = [p.score for p in points if p.feasible and p.score is not None]
    # Optuna needs a value on a completed trial; TPE's split ignores it for an infeasible
    # one (infeasible trials rank after all feasible ones), so it is the worst seen
    worst = objective.worst(scores) if scores else 0.0
    for point in points:
        params = {k: v for k, v in point.params.items() if k in space}
        expected = set(active_names(dists, params))  # a conditional parameter may be absent
        if set(params) != expected or not all(dists[k].contains(v) for k, v in params.items()):
            continue  # outside this stage's ranges; TPE learns from this stage's trials
        if point.feasible and point.score is None:
            continue  # nothing to learn: stopped before it scored
        study.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions={k: space[k] for k in params},
                value=point.score if point.feasible else worst,
                constraints=None if point.feasible else {INFEASIBLE: 1.0},
            )
        )
    return study


def suggest_tpe(
    s: Session, study: StudyRow, stage: StageRow, number: int
) -> dict[str, Any] | None:
    """TPE's parameters for trial `number`, or None when the study samples at random."""
    if study.spec.get("sampler", "random") != "tpe":
        return None
    dists = parse_space(stage.space)
    done = [TrialState.COMPLETED.value, TrialState.STOPPED.value]
    bad = [TrialState.DIVERGED.value, TrialState.FAILED.value]
    scored = [TrialRow.best_score.is_not(None), TrialRow.state.in_(done)]
    finished = s.scalars(
        select(TrialRow).where(TrialRow.stage_id == stage.id, TrialRow.state.in_(done + bad))
    )
    points = [TpePoint(t.params or {}, t.best_score, feasible=t.state in done) for t in finished]
    warm = study.spec.get("warm_start")
    if warm and stage.index == 0:  # a warm start: the old study's trials teach TPE too
        if warm.get("snapshot"):
            points += [TpePoint(t["params"], t["score"]) for t in warm["snapshot"]["trials"]]
        elif warm.get("study"):
            old = select(TrialRow).where(TrialRow.study_id == int(warm["study"]), *scored)
            points += [TpePoint(t.params or {}, t.best_score) for t in s.scalars(old)]
    seed = study.seed * 1_000_003 + number
    ostudy = tpe_study(points, dists, objective=study.objective, seed=seed)
    return suggest_params(ostudy.ask(), dists)  # define-by-run: parents first
