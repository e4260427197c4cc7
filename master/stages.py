"""The stage controller: coarse-to-fine, stage by stage (the seed's "Stage your search
from coarse to fine").

When a stage's last trial finishes, the stage closes: its top trials (by validation
score) narrow the ranges of the next stage, values on a border flag it and widen past it,
and the next stage opens; after the last stage, the final flags are recorded and the
study completes, the moment its last trial does. The protocol calls `advance` in the
transaction that finishes a trial; the monitor's timer calls `advance_all`, for a study
that was paused or resumed while its stage filled.
"""

from __future__ import annotations

import logging
import math

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gridless.common.db import StageRow, StudyRow, TrialRow, utcnow
from gridless.common.space import parse_space, space_to_json
from gridless.common.states import StageState, StudyState, TrialState
from gridless.master.narrowing import (
    NarrowingPolicy,
    border_flags,
    learning_rate_flags,
    narrow_space,
)
from gridless.master.storage import count_warning_codes, ranked

__all__ = ["OPEN_STATES", "advance", "advance_all", "complete", "running_stage"]

log = logging.getLogger(__name__)

OPEN_STATES = [st.value for st in TrialState if not st.is_finished()]


def running_stage(s: Session, study: StudyRow) -> StageRow | None:
    """The study's open stage, or None once the last one closed."""
    return s.scalar(
        select(StageRow).where(
            StageRow.study_id == study.id, StageRow.state == StageState.RUNNING.value
        )
    )


def complete(study: StudyRow) -> None:
    study.state = StudyState.COMPLETED.value
    study.finished_at = utcnow()


def advance(s: Session, study: StudyRow) -> bool:
    """Close the running study's stage if all its trials finished, and open the next (or
    complete the study); True when something changed."""
    if study.state != StudyState.RUNNING.value:
        return False
    stage = running_stage(s, study)
    if stage is None:
        complete(study)  # a study whose stages all closed: nothing is left to run
        return True
    trials = s.scalar(
        select(func.count()).select_from(TrialRow).where(TrialRow.stage_id == stage.id)
    )
    busy = s.scalar(
        select(func.count())
        .select_from(TrialRow)
        .where(TrialRow.stage_id == stage.id, TrialRow.state.in_(OPEN_STATES))
    )
    if (trials or 0) < stage.trials or busy:
        return False
    _close(s, study, stage)
    return True


def advance_all(s: Session) -> list[int]:
    """`advance` every running study; the ids of those that moved."""
    moved = []
    studies = s.scalars(select(StudyRow).where(StudyRow.state == StudyState.RUNNING.value))
    for study in list(studies):
        if advance(s, study):
            moved.append(study.id)
    return moved


def _close(s: Session, study: StudyRow, stage: StageRow) -> None:
    """Record the stage's decisions; open the next stage with narrowed ranges, or
    complete the study after its last."""
    policy = NarrowingPolicy.from_spec(study.spec.get("narrowing"))
    stage.state = StageState.DONE.value
    nxt = s.scalar(
        select(StageRow).where(StageRow.study_id == study.id, StageRow.index == stage.index + 1)
    )
    space = parse_space(stage.space)
    if nxt is None:
        best = s.scalars(ranked(study).where(TrialRow.best_score.is_not(None)).limit(1)).first()
        flags = border_flags(space, best.params or {}, policy) if best is not None else []
        stage.decisions = {"flags": [f.to_json() for f in flags], "decisions": []}
        complete(study)
        log.info("study %s completed", study.name)
        return
    scored = (
        s.scalar(
            select(func.count())
            .select_from(TrialRow)
            .where(TrialRow.stage_id == stage.id, TrialRow.best_score.is_not(None))
        )
        or 0
    )
    n_top = min(scored, max(policy.min_top, math.ceil(policy.top_fraction * scored)))
    top = list(
        s.scalars(
            ranked(study)
            .where(TrialRow.stage_id == stage.id, TrialRow.best_score.is_not(None))
            .limit(n_top)
        )
    )
    stage_warnings = list(
        s.scalars(select(TrialRow.warnings).where(TrialRow.stage_id == stage.id))
    )
    counts = count_warning_codes(stage_warnings)
    evidence = learning_rate_flags(space, counts, len(stage_warnings))
    new_space, flags, decisions = narrow_space(
        space, [t.params or {} for t in top], policy, evidence_flags=evidence
    )
    stage.decisions = {
        "flags": [f.to_json() for f in flags],
        "decisions": [d.to_json() for d in decisions],
        "top_trials": [t.number for t in top],
    }
    nxt.space = space_to_json(new_space)
    nxt.state = StageState.RUNNING.value
    for flag in flags:
        log.info("stage %d: %s", stage.index + 1, flag.message)
