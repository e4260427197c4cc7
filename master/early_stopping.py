"""Early stopping of hopeless trials within a stage: the median rule.

A trial is stopped at epoch e (e > `grace_epochs`) when its best score up to e is worse
than the median score at epoch e of the other trials of its stage that reached e, once
at least `min_trials` of them did (the median stopping rule of Google Vizier). The
coarse stage can then afford many trials: the ones that are clearly behind stop early
and free their worker. Divergence (NaN, loss far above its start) is handled earlier, by
the worker, at once.
"""

from __future__ import annotations

import statistics
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gridless.common.db import EpochMetricRow, StudyRow, TrialRow

__all__ = ["DEFAULT_EARLY_STOPPING", "should_stop"]

DEFAULT_EARLY_STOPPING: dict[str, Any] = {"rule": "median", "grace_epochs": 1, "min_trials": 5}


def should_stop(
    s: Session, study: StudyRow, trial: TrialRow, epoch: int, score: float
) -> str | None:
    """The reason to stop `trial` after its report for `epoch`, or None to go on."""
    rule = {**DEFAULT_EARLY_STOPPING, **(study.spec.get("early_stopping") or {})}
    if rule["rule"] == "none" or epoch <= int(rule["grace_epochs"]) or epoch >= trial.epochs:
        return None
    others = [
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
    if len(others) < int(rule["min_trials"]):
        return None
    median = statistics.median(others)
    best = trial.best_score if trial.best_score is not None else score
    behind = best < median if study.maximize else best > median
    if not behind:
        return None
    return (
        f"early stop (median rule): best {study.metric} {best:.4f} by epoch {epoch} is behind "
        f"the median {median:.4f} of {len(others)} trials of its stage at that epoch"
    )
