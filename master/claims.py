"""Claims: which trial a worker trains next (a lost trial to resume, else a new trial
of the oldest running study's open stage), and trials resumed from a checkpoint.

Functions of one session; `master.protocol` runs them in the writer's transactions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gridless.common.db import CheckpointRow, StageRow, StudyRow, TrialRow, utcnow
from gridless.common.errors import ConflictError
from gridless.common.messages import Assignment, ClaimResponse, ResumePoint
from gridless.common.states import StudyState, TrialState
from gridless.master import rescore
from gridless.master.context import live_checkpoint
from gridless.master.liveness import touch_worker
from gridless.master.sampler_state import SuggestionPending
from gridless.master.stages import running_stage

__all__ = ["PENDING_WAIT_S", "WAIT_S", "ParamSuggester", "claim", "resume_checkpoint"]

log = logging.getLogger(__name__)

WAIT_S = 0.2
# While the model prepares a suggestion (a new stage, a restarted master): a short wait.
PENDING_WAIT_S = 0.05

# (session, study row, stage row, trial number) -> parameters, for model-based samplers
# (TPE); None lets the worker sample at random; SuggestionPending: ask again shortly.
ParamSuggester = Callable[[Session, StudyRow, StageRow, int], dict[str, Any] | None]


def claim(s: Session, worker_id: str, suggester: ParamSuggester) -> ClaimResponse:
    """A lost trial to resume, a new trial of the oldest running study, wait or stop."""
    worker = touch_worker(s, worker_id)
    answer = _claim(s, worker_id, suggester)
    worker.state = "busy" if answer.assignment else "idle"
    worker.trial_id = answer.assignment.trial_id if answer.assignment else None
    return answer


def _claim(s: Session, worker_id: str, suggester: ParamSuggester) -> ClaimResponse:
    active = [StudyState.RUNNING.value, StudyState.PAUSED.value]
    studies = list(
        s.scalars(select(StudyRow).where(StudyRow.state.in_(active)).order_by(StudyRow.id))
    )
    pending = False
    for study in studies:
        if study.state != StudyState.RUNNING.value:
            continue
        lost = s.scalar(
            select(TrialRow)
            .where(TrialRow.study_id == study.id, TrialRow.state == TrialState.LOST.value)
            .order_by(TrialRow.number)
            .limit(1)
        )
        if lost is not None:
            return _resume(s, study, lost, worker_id)
        stage = running_stage(s, study)
        if stage is None:
            continue  # its last stage closed: the stage controller completes it
        in_stage = (
            s.scalar(
                select(func.count()).select_from(TrialRow).where(TrialRow.stage_id == stage.id)
            )
            or 0
        )
        cap = (study.spec.get("stop") or {}).get("max_trials")
        if cap is not None and study.next_trial_number >= cap:
            continue  # the trial budget is spent; its last trials end the study
        if in_stage < stage.trials:
            try:
                return _assign(s, study, stage, worker_id, suggester)
            except SuggestionPending:
                pending = True  # nothing changed yet; a later study may have work
                continue
        # the stage is full and busy; a later study may have work
    if studies:
        return ClaimResponse(action="wait", retry_after_s=PENDING_WAIT_S if pending else WAIT_S)
    return ClaimResponse(action="stop")


def _assignment(study: StudyRow, stage: StageRow, trial: TrialRow) -> Assignment:
    spec = study.spec
    return Assignment(
        trial_id=trial.id,
        study=study.name,
        trial_number=trial.number,
        attempt=trial.attempt,
        seed=study.seed,
        model=spec["model"],
        train=spec.get("train"),
        dataset=spec["dataset"],
        metric=study.metric,
        maximize=study.maximize,
        stage=stage.index + 1,
        epochs=trial.epochs,
        space=stage.space,
        fixed=spec.get("fixed", {}),
        max_trial_seconds=spec.get("max_trial_seconds"),
        max_trial_memory_mb=spec.get("max_trial_memory_mb"),
    )


def _assign(
    s: Session, study: StudyRow, stage: StageRow, worker_id: str, suggester: ParamSuggester
) -> ClaimResponse:
    number = study.next_trial_number
    enqueued = study.spec.get("enqueue") or []
    queued = study.spec.get("queued") or []  # POST /studies/{id}/trials
    origin, parent = None, None
    rerun = rescore.next_rerun(stage)  # rescore: the stage's top on another seed
    if rerun is not None:
        params: dict[str, Any] | None = rerun[0]
        origin, parent = rescore.ORIGIN, rerun[1]
    elif stage.index == 0 and number < len(enqueued):
        params = dict(enqueued[number])  # known-good ones first
        origin = "enqueued"
    elif queued:
        params, origin = dict(queued[0]), "enqueued"
        study.spec = {**study.spec, "queued": queued[1:]}
    else:
        params = suggester(s, study, stage, number)
    trial = TrialRow(
        study_id=study.id,
        stage_id=stage.id,
        number=number,
        state=TrialState.PENDING.value,
        attempt=0,
        epochs=stage.epochs,
        worker_id=worker_id,
        params=params,
        origin=origin,
        parent_id=parent,
        warnings=[],
        heartbeat_at=utcnow(),
    )
    study.next_trial_number += 1
    s.add(trial)
    s.flush()
    job = _assignment(study, stage, trial)
    if params is not None:
        job.params = params
    return ClaimResponse(action="train", assignment=job)


def _resume(s: Session, study: StudyRow, trial: TrialRow, worker_id: str) -> ClaimResponse:
    """Hand a lost trial to this worker as a new attempt, from its latest checkpoint."""
    stage = s.get(StageRow, trial.stage_id)
    assert stage is not None  # foreign key
    trial.attempt += 1
    trial.state = TrialState.PENDING.value
    trial.worker_id = worker_id
    trial.heartbeat_at = utcnow()
    live = s.scalars(
        select(CheckpointRow)
        .where(CheckpointRow.trial_id == trial.id, CheckpointRow.deleted_at.is_(None))
        .order_by(CheckpointRow.epoch.desc())
    ).all()
    if trial.resume_path is not None:  # a person resumed another trial's checkpoint
        origin = s.scalar(select(CheckpointRow).where(CheckpointRow.path == trial.resume_path))
        live = [*live, *([origin] if origin is not None else [])]
    job = _assignment(study, stage, trial)
    job.params = trial.params
    job.best_score = trial.best_score
    job.resume_candidates = [
        ResumePoint(path=c.path, epoch=c.epoch, size=c.size, sha256=c.sha256) for c in live
    ]
    if live:
        job.resume_from, job.resume_epoch = live[0].path, live[0].epoch
    elif trial.resume_path is not None:
        job.resume_from, job.resume_epoch = trial.resume_path, trial.resume_epoch
    log.info(
        "trial %s resumes as attempt %d on %s from epoch %d",
        trial.number,
        trial.attempt,
        worker_id,
        job.resume_epoch,
    )
    return ClaimResponse(action="train", assignment=job)


def resume_checkpoint(s: Session, path: str, epochs: int) -> TrialRow:
    """A new trial that continues from a recorded checkpoint for `epochs` more epochs;
    the next claim hands it out. A completed study reopens for it.

    Raises:
        NotFoundError: for a path no live checkpoint has.
        ConflictError: when the study was stopped.
    """
    ck, source = live_checkpoint(s, path)
    study = s.get(StudyRow, source.study_id)
    assert study is not None
    if study.state == StudyState.STOPPED.value:
        raise ConflictError(f"study {study.id} is stopped; resume it before its checkpoints")
    trial = TrialRow(
        study_id=study.id,
        stage_id=source.stage_id,
        number=study.next_trial_number,
        params=source.params,
        state=TrialState.LOST.value,  # the next claim resumes it
        attempt=0,
        epochs=ck.epoch + epochs,
        parent_id=source.id,
        resume_path=ck.path,
        resume_epoch=ck.epoch,
        warnings=[],
        heartbeat_at=utcnow(),
    )
    study.next_trial_number += 1
    if study.state == StudyState.COMPLETED.value:
        study.state, study.finished_at = StudyState.RUNNING.value, None
    s.add(trial)
    s.flush()
    return trial
