"""The optional Bayesian sampler: Optuna's TPE used as a library (`sampler: tpe`).

For each new trial of a stage, an in-memory Optuna study is rebuilt from the finished,
scored trials of that stage (so a restarted master needs no extra state), seeded from the
study seed and the trial number, and asked once for parameters in the stage's (narrowed)
ranges. Running trials are not told to TPE; with few workers that costs little. Random
sampling stays the default; with fewer finished trials than TPE's start-up count, TPE
itself samples at random.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gridless.common.db import StageRow, StudyRow, TrialRow
from gridless.common.space import (
    Choice,
    Distribution,
    IntLogUniform,
    IntUniform,
    LogUniform,
    Uniform,
    parse_space,
)
from gridless.common.states import TrialState

__all__ = ["suggest_tpe", "to_optuna"]


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


def suggest_tpe(
    s: Session, study: StudyRow, stage: StageRow, number: int
) -> dict[str, Any] | None:
    """TPE's parameters for trial `number`, or None when the study samples at random."""
    if study.spec.get("sampler", "random") != "tpe":
        return None
    import optuna

    optuna.logging.set_verbosity(logging.WARNING)
    dists = parse_space(stage.space)
    space = {name: to_optuna(d) for name, d in dists.items()}
    sampler = optuna.samplers.TPESampler(seed=(study.seed * 1_000_003 + number) % 2**32)
    ostudy = optuna.create_study(direction=study.objective.direction, sampler=sampler)
    done = [TrialState.COMPLETED.value, TrialState.STOPPED.value]
    scored = [TrialRow.best_score.is_not(None), TrialRow.state.in_(done)]
    finished = list(s.scalars(select(TrialRow).where(TrialRow.stage_id == stage.id, *scored)))
    warm = study.spec.get("warm_start")
    points = [(t.params or {}, t.best_score) for t in finished]
    if warm and stage.index == 0:  # a warm start: the old study's trials teach TPE too
        if warm.get("snapshot"):
            points += [(t["params"], t["score"]) for t in warm["snapshot"]["trials"]]
        elif warm.get("study"):
            old = select(TrialRow).where(TrialRow.study_id == int(warm["study"]), *scored)
            points += [(t.params or {}, t.best_score) for t in s.scalars(old)]
    for given, score in points:
        params = {k: v for k, v in given.items() if k in space}
        if set(params) != set(space) or not all(dists[k].contains(v) for k, v in params.items()):
            continue  # outside this stage's ranges; TPE learns from this stage's trials
        ostudy.add_trial(
            optuna.trial.create_trial(params=params, distributions=space, value=score)
        )
    return dict(ostudy.ask(space).params)
