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

import datetime as dt
import logging
import math
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from gridless.common.db import StageRow, StudyRow, TrialRow, utcnow
from gridless.common.errors import ConflictError
from gridless.common.space import parse_space, space_to_json
from gridless.common.states import StageState, StudyState, TrialState
from gridless.master import notify, rescore
from gridless.master.context import count_warning_codes, ranked
from gridless.master.liveness import release_worker
from gridless.master.narrowing import (
    NarrowingPolicy,
    border_flags,
    learning_rate_flags,
    narrow_space,
)

__all__ = [
    "OPEN_STATES",
    "advance",
    "advance_all",
    "complete",
    "end_study",
    "extend",
    "running_stage",
    "target_reached",
]

MAX_STAGES = 100

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
    notify.study_finished(study)


def advance(s: Session, study: StudyRow) -> bool:
    """Close the running study's stage if all its trials finished, and open the next (or
    complete the study); True when something changed."""
    if study.state != StudyState.RUNNING.value:
        return False
    reason = _budget_spent(s, study)
    if reason is not None:
        end_study(s, study, reason)
        return True
    stage = running_stage(s, study)
    if stage is None:
        waiting = s.scalar(
            select(StageRow)
            .where(StageRow.study_id == study.id, StageRow.state == StageState.WAITING.value)
            .order_by(StageRow.index)
            .limit(1)
        )
        done = s.scalar(
            select(StageRow)
            .where(StageRow.study_id == study.id, StageRow.state == StageState.DONE.value)
            .order_by(StageRow.index.desc())
            .limit(1)
        )
        if waiting is not None and done is not None:  # stages added to a finished study
            kept = (done.decisions or {}).get("rescore")
            _narrow(s, study, done, waiting)
            if kept is not None:  # the narrowing rewrote the decisions: keep re-scoring's
                done.decisions = {**done.decisions, "rescore": kept}
        else:
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
    if rescore.hold(s, study, stage):  # issue 20: the top re-runs on more seeds first
        return True
    record = rescore.settle(s, study, stage)
    _close(s, study, stage)
    if record is not None:
        stage.decisions = {**stage.decisions, "rescore": record}
    notify.border_flags(stage)
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
    stage.state = StageState.DONE.value
    nxt = s.scalar(
        select(StageRow).where(StageRow.study_id == study.id, StageRow.index == stage.index + 1)
    )
    reason = _no_progress(s, study)
    if nxt is not None and reason is not None:
        end_study(s, study, reason)
        return
    if nxt is None:
        policy = NarrowingPolicy.from_spec(study.spec.get("narrowing"))
        best = s.scalars(ranked(study).where(TrialRow.best_score.is_not(None)).limit(1)).first()
        space = parse_space(stage.space)
        flags = border_flags(space, best.params or {}, policy) if best is not None else []
        stage.decisions = {"flags": [f.to_json() for f in flags], "decisions": []}
        complete(study)
        log.info("study %s completed", study.name)
        return
    _narrow(s, study, stage, nxt)


def _searched(stage: StageRow) -> list[ColumnElement[bool]]:
    """The stage's scored trials that the search chose (re-runs of its top on more seeds
    are not new evidence about the ranges: their configuration is counted once)."""
    return [
        TrialRow.stage_id == stage.id,
        TrialRow.best_score.is_not(None),
        TrialRow.origin.is_distinct_from(rescore.ORIGIN),
    ]


def _narrow(s: Session, study: StudyRow, stage: StageRow, nxt: StageRow) -> None:
    """Open `nxt` with the ranges `stage`'s top trials narrow to (border flags widen)."""
    policy = NarrowingPolicy.from_spec(study.spec.get("narrowing"))
    space = parse_space(stage.space)
    scored = s.scalar(select(func.count()).select_from(TrialRow).where(*_searched(stage))) or 0
    n_top = min(scored, max(policy.min_top, math.ceil(policy.top_fraction * scored)))
    top = list(s.scalars(ranked(study).where(*_searched(stage)).limit(n_top)))
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
    edited = study.spec.get("next_space")
    if edited:  # a person set the next stage's ranges (PATCH .../space): they win
        nxt.space = edited
        stage.decisions["edited"] = "the next stage's ranges were set by PATCH .../space"
        study.spec = {k: v for k, v in study.spec.items() if k != "next_space"}
    nxt.state = StageState.RUNNING.value
    for flag in flags:
        log.info("stage %d: %s", stage.index + 1, flag.message)


def extend(s: Session, study: StudyRow, added: list[tuple[int, int]]) -> list[StageRow]:
    """Append stages of (trials, epochs) to a study (issue 18). A completed study runs
    again: its first new stage opens at once, narrowed from its last finished stage by the
    usual rules (border flags included); a running one reaches them in turn.

    Raises:
        ConflictError: for a stopped study, or past `MAX_STAGES` stages.
    """
    if study.state == StudyState.STOPPED.value:
        raise ConflictError(f"study {study.id} is stopped; resume it before extending it")
    stages = list(s.scalars(select(StageRow).where(StageRow.study_id == study.id)))
    if len(stages) + len(added) > MAX_STAGES:
        raise ConflictError(
            f"study {study.id} has {len(stages)} stages; {len(added)} more would pass the "
            f"limit of {MAX_STAGES}"
        )
    last = max(st.index for st in stages)
    rows = [
        StageRow(
            study_id=study.id,
            index=last + 1 + i,
            trials=trials,
            epochs=epochs,
            space={},
            state=StageState.WAITING.value,
            decisions={},
        )
        for i, (trials, epochs) in enumerate(added)
    ]
    s.add_all(rows)
    spec = dict(study.spec)
    spec["stages"] = [*spec["stages"], *({"trials": t, "epochs": e} for t, e in added)]
    study.spec = spec  # a new value, so the JSON column is written
    s.flush()
    if study.state == StudyState.COMPLETED.value:
        study.state, study.finished_at = StudyState.RUNNING.value, None
        advance(s, study)
    return rows


# -- stop rules (issue 18) ------------------------------------------------------------


def _rules(study: StudyRow) -> dict[str, Any]:
    return dict(study.spec.get("stop") or {})


def end_study(s: Session, study: StudyRow, reason: str) -> None:
    """A stop rule ends the study: completed, with why; its open trials stop."""
    now = utcnow()
    for stage in s.scalars(
        select(StageRow).where(
            StageRow.study_id == study.id, StageRow.state == StageState.RUNNING.value
        )
    ):
        stage.state = StageState.DONE.value
    for trial in s.scalars(
        select(TrialRow).where(TrialRow.study_id == study.id, TrialRow.state.in_(OPEN_STATES))
    ):
        trial.state, trial.error, trial.finished_at = TrialState.STOPPED.value, reason, now
        release_worker(s, trial)
    complete(study)
    study.stop_reason = reason
    log.info("study %s ended by its stop rule: %s", study.name, reason)


def target_reached(study: StudyRow, score: float, trial: TrialRow, epoch: int) -> str | None:
    """The reason to end the study when `score` reaches the `target` stop rule."""
    target = _rules(study).get("target")
    if target is None:
        return None
    reached = study.objective.reached(score, target)
    if not reached:
        return None
    sign = study.objective.comparison
    return (
        f"target reached: {study.metric} {score:.4g} {sign} {target:g} "
        f"(trial {trial.number}, epoch {epoch})"
    )


def _budget_spent(s: Session, study: StudyRow) -> str | None:
    """`max_minutes` passed, or `max_trials` trials made and none still open."""
    rules = _rules(study)
    minutes = rules.get("max_minutes")
    if minutes is not None:
        created = study.created_at  # SQLite hands it back naive: it is UTC
        created = created if created.tzinfo is not None else created.replace(tzinfo=dt.UTC)
        spent = (utcnow() - created).total_seconds() / 60
        if spent >= minutes:
            return f"time budget spent: {spent:.1f} of {minutes:g} minutes"
    cap = rules.get("max_trials")
    if cap is not None and study.next_trial_number >= cap:
        busy = s.scalar(
            select(func.count())
            .select_from(TrialRow)
            .where(TrialRow.study_id == study.id, TrialRow.state.in_(OPEN_STATES))
        )
        if not busy:
            return f"trial budget spent: {study.next_trial_number} of {cap} trials"
    return None


def _no_progress(s: Session, study: StudyRow) -> str | None:
    """`patience_stages` closed stages in a row whose best did not beat the best before."""
    patience = _rules(study).get("patience_stages")
    if patience is None:
        return None
    best = study.objective.best_of(TrialRow.best_score)
    rows = s.execute(
        select(StageRow.index, best)
        .join(TrialRow, TrialRow.stage_id == StageRow.id)
        .where(StageRow.study_id == study.id, StageRow.state == StageState.DONE.value)
        .group_by(StageRow.index)
        .order_by(StageRow.index)
    ).all()
    scores = [score for _, score in rows if score is not None]
    if len(scores) <= patience:
        return None
    before = study.objective.best(scores[:-patience])
    recent = study.objective.best(scores[-patience:])
    improved = study.objective.better(recent, before)
    if improved:
        return None
    return (
        f"no progress: the best {study.metric} of the last {patience} stage(s), {recent:.4g}, "
        f"does not beat {before:.4g} from before them"
    )
