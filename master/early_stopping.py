"""Early stopping of hopeless trials within a stage: the median rule, or ASHA.

Median rule (Google Vizier): a trial is stopped at epoch e (e > `grace_epochs`) when its
best score up to e is worse than the median score at epoch e of the other trials of its
stage that reached e, once at least `min_trials` of them did.

ASHA, asynchronous successive halving (Li et al. 2018), as Ray Tune's
`AsyncHyperBandScheduler` with one bracket decides it: epochs are the resource; rungs sit
at `min_epochs * reduction_factor**k` epochs below the stage's epochs (at most `rungs`
of them). A trial reaching a rung is compared with the trials of its stage that reached
that rung before it: it goes on only if its score there is not below the
(1 - 1/reduction_factor) quantile of theirs (linear interpolation, like NumPy's
`nanpercentile`), so about one in `reduction_factor` trials climbs each rung. The first
trial at a rung always goes on. Decided on each report, like the median rule, from the
stored epoch scores, so it needs no state of its own and survives a master restart.

Either way the coarse stage can afford many trials: the ones that are clearly behind stop
early and free their worker. Divergence (NaN, loss far above its start) is handled earlier,
by the worker, at once. Re-runs of a stage's top configurations (`rescore`) are never
stopped: their full scores are what the mean over seeds compares.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from gridless.common.db import EpochMetricRow, StudyRow, TrialRow
from gridless.common.metric import Metric
from gridless.common.spec import EarlyStoppingSpec

__all__ = ["DEFAULT_EARLY_STOPPING", "asha_cutoff", "asha_rungs", "should_stop"]

# The spec's defaults are the only ones: a stored spec may predate a key.
DEFAULT_EARLY_STOPPING: dict[str, Any] = EarlyStoppingSpec().model_dump()
_ASHA = {k: DEFAULT_EARLY_STOPPING[k] for k in ("min_epochs", "reduction_factor", "rungs")}


def should_stop(
    s: Session, study: StudyRow, trial: TrialRow, epoch: int, score: float
) -> str | None:
    """The reason to stop `trial` after its report for `epoch`, or None to go on."""
    rule = {**DEFAULT_EARLY_STOPPING, **(study.spec.get("early_stopping") or {})}
    if rule["rule"] == "none" or epoch >= trial.epochs or trial.origin == "rescore":
        return None
    if isinstance(study.spec.get("metric"), list):
        # a multi-objective study: a trial behind on one objective may still belong on
        # the Pareto front, so none is stopped early (as Optuna prunes none)
        return None
    if rule["rule"] == "asha":
        return _asha(s, study, trial, epoch, score, rule)
    return _median(s, study, trial, epoch, score, rule)


def _others_at(s: Session, trial: TrialRow, epoch: int) -> list[float]:
    """The scores at `epoch` of the other trials of `trial`'s stage that reported it."""
    return [
        v
        for v in s.scalars(
            select(EpochMetricRow.score).where(
                EpochMetricRow.stage_id == trial.stage_id,
                EpochMetricRow.epoch == epoch,
                EpochMetricRow.trial_id != trial.id,
            )
        )
        if v is not None
    ]


def _median(
    s: Session, study: StudyRow, trial: TrialRow, epoch: int, score: float, rule: dict[str, Any]
) -> str | None:
    if epoch <= int(rule["grace_epochs"]):
        return None
    others = _others_at(s, trial, epoch)
    if len(others) < int(rule["min_trials"]):
        return None
    median = statistics.median(others)
    best = trial.best_score if trial.best_score is not None else score
    behind = study.objective.better(median, best)
    if not behind:
        return None
    return (
        f"early stop (median rule): best {study.metric} {best:.4f} by epoch {epoch} is behind "
        f"the median {median:.4f} of {len(others)} trials of its stage at that epoch"
    )


def asha_rungs(
    epochs: int,
    *,
    min_epochs: int = _ASHA["min_epochs"],
    reduction_factor: float = _ASHA["reduction_factor"],
    rungs: int | None = _ASHA["rungs"],
) -> list[int]:
    """The epochs at which ASHA compares a stage's trials of `epochs` epochs: the first
    epoch at or after each milestone `min_epochs * reduction_factor**k`, below `epochs`
    (a rung at the last epoch could stop nothing), the first `rungs` of them."""
    found: list[int] = []
    k = 0
    while rungs is None or len(found) < rungs:
        rung = math.ceil(min_epochs * reduction_factor**k - 1e-9)
        if rung >= epochs:
            break
        if not found or rung > found[-1]:
            found.append(rung)
        k += 1
    return found


def asha_cutoff(
    others: list[float], reduction_factor: float, *, objective: Metric
) -> float | None:
    """The score a trial must reach at a rung to go on, given the scores of the trials that
    reached it before (None: it is the first, and goes on). Ray Tune's `_Bracket.cutoff`
    on sign-adjusted scores, returned in the metric's own sign."""
    if not others:
        return None
    sign = objective.sign
    q = (1.0 - 1.0 / reduction_factor) * 100.0
    return sign * float(np.percentile([sign * v for v in others], q))


def _asha(
    s: Session, study: StudyRow, trial: TrialRow, epoch: int, score: float, rule: dict[str, Any]
) -> str | None:
    rf = float(rule["reduction_factor"])
    rungs = asha_rungs(
        trial.epochs,
        min_epochs=int(rule["min_epochs"]),
        reduction_factor=rf,
        rungs=rule["rungs"],
    )
    if epoch not in rungs:
        return None
    others = _others_at(s, trial, epoch)
    cut = asha_cutoff(others, rf, objective=study.objective)
    if cut is None:
        return None
    behind = study.objective.better(cut, score)
    if not behind:
        return None
    side = study.objective.beyond
    return (
        f"early stop (ASHA): {study.metric} {score:.4f} at epoch {epoch} (rung "
        f"{rungs.index(epoch) + 1} of {len(rungs)}) is {side} the cut {cut:.4f} that keeps "
        f"the top 1/{rf:g} of the {len(others)} trials of its stage that reached it before"
    )
