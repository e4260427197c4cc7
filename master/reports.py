"""What workers tell about their trials: start (the sampled parameters), epoch reports
(metrics, statistics, findings, checkpoints) and the finish; the end of a trial closes
its stage when it was the last (`master.stages`).

Protocol rules (DESIGN.md): finished states never change; a report is keyed by
(trial, attempt, epoch) and a repeat is a no-op that still answers 2xx, inside one batch
too; a report for a finished trial or a superseded attempt gets 409. Functions of one
transaction (`Batch`); `master.protocol` runs them in the writer.
"""

from __future__ import annotations

import logging
import math
from functools import partial

from sqlalchemy import select
from sqlalchemy.orm import Session

from gridless.common.checkpoints import CheckpointStore, trial_folder
from gridless.common.db import CheckpointRow, EpochMetricRow, StudyRow, TrialRow, utcnow
from gridless.common.errors import ConflictError, NotFoundError, SpecError
from gridless.common.messages import EpochReport, FinishRequest, ReportAck, StartRequest
from gridless.common.states import StudyState, TrialState
from gridless.master import notify, stages
from gridless.master.breaker import trip_if_failing
from gridless.master.context import cached_get
from gridless.master.early_stopping import should_stop
from gridless.master.liveness import release_worker, touch_worker
from gridless.master.retention import delete_files, retain
from gridless.master.writer import Batch

__all__ = ["finish_trial", "open_trial", "prefetch_stored", "record_report", "start_trial"]

log = logging.getLogger(__name__)


def open_trial(s: Session, trial_id: int, attempt: int) -> TrialRow:
    """The trial a worker writes to, if it may.

    Raises:
        NotFoundError: no such trial.
        ConflictError: the trial finished, or `attempt` was superseded.
    """
    trial = cached_get(s, TrialRow, trial_id)
    if trial is None:
        raise NotFoundError(f"no trial {trial_id}")
    if TrialState(trial.state).is_finished():
        raise ConflictError(f"trial {trial_id} is {trial.state}")
    if attempt != trial.attempt:
        raise ConflictError(f"trial {trial_id} attempt {attempt} is superseded by {trial.attempt}")
    if trial.state == TrialState.LOST.value:
        trial.state = TrialState.RUNNING.value  # its worker was slow, not gone: revive
    return trial


def start_trial(s: Session, trial_id: int, request: StartRequest) -> ReportAck:
    """Register the sampled parameters; the trial runs. Repeats are no-ops."""
    trial = open_trial(s, trial_id, request.attempt)
    for key, value in request.params.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise SpecError(f"params.{key}: must be finite")
    if trial.params is None:
        trial.params = dict(request.params)
    elif trial.params != request.params:
        raise ConflictError(f"trial {trial_id} was registered with other parameters")
    trial.state = TrialState.RUNNING.value
    trial.worker_id = request.worker_id
    trial.heartbeat_at = utcnow()
    touch_worker(s, request.worker_id).trial_id = trial_id
    return ReportAck(stored=True)


def record_report(
    batch: Batch, store: CheckpointStore, trial_id: int, report: EpochReport
) -> ReportAck:
    """Store one epoch's metrics (and its checkpoint) once; a repeat answers stored=False."""
    s = batch.session
    trial = open_trial(s, trial_id, report.attempt)
    study = cached_get(s, StudyRow, trial.study_id)
    assert study is not None  # foreign key
    now = utcnow()
    trial.heartbeat_at = now
    touch_worker(s, report.worker_id)
    if _stored(s, trial_id, report.epoch):
        # A resumed attempt re-trained this epoch (or a lost acknowledgement resent it):
        # its metrics are not stored again, but its checkpoint and findings are.
        _merge_warnings(trial, report)
        if report.checkpoint is not None:
            _record_checkpoint(batch, store, study, trial, report)
        return ReportAck(stored=False, stop=_must_stop(s, study, trial))
    named = report.named_metrics()
    score = study.objective.score(named)
    row = EpochMetricRow(
        trial_id=trial_id,
        stage_id=trial.stage_id,
        attempt=report.attempt,
        epoch=report.epoch,
        train_loss=_number(named.get("train_loss")),
        train_accuracy=_number(named.get("train_accuracy")),
        val_loss=_number(named.get("val_loss")),
        val_accuracy=_number(named.get("val_accuracy")),
        seconds=report.seconds,
        metrics=named,
        score=score,
        stats=report.stats,
    )
    s.add(row)
    s.info.setdefault("epochs", {})[(trial_id, report.epoch)] = row
    trial.last_epoch = max(trial.last_epoch, report.epoch)
    trial.state = TrialState.RUNNING.value
    _merge_warnings(trial, report)
    if report.diverged:
        _end(s, study, trial, TrialState.DIVERGED.value, None)
    elif score is not None and study.objective.better(score, trial.best_score):
        trial.best_score, trial.best_epoch = score, report.epoch
        trial.best_metrics = named
    elif trial.best_score is None:
        trial.best_metrics = named  # nothing scored yet: the latest epoch's numbers
    if report.checkpoint is not None:
        _record_checkpoint(batch, store, study, trial, report)
    stop = _must_stop(s, study, trial)
    if not stop and not report.diverged and score is not None:
        reached = stages.target_reached(study, score, trial, report.epoch)
        if reached is not None:
            stages.end_study(s, study, reached)
            stop = True
        else:
            reason = should_stop(s, study, trial, report.epoch, score)
            if reason is not None:
                _end(s, study, trial, TrialState.STOPPED.value, reason)
                stop = True
    if stop and not report.diverged:
        _note_unsaved_best(s, trial)
    return ReportAck(stored=True, stop=stop)


def finish_trial(s: Session, trial_id: int, request: FinishRequest) -> ReportAck:
    """Mark a trial finished; a repeat of the same final state is a no-op."""
    trial = s.get(TrialRow, trial_id)
    if trial is None:
        raise NotFoundError(f"no trial {trial_id}")
    if TrialState(trial.state).is_finished():
        if trial.attempt == request.attempt and trial.state in (request.state, "stopped"):
            return ReportAck(stored=False, stop=True)
        raise ConflictError(f"trial {trial_id} is {trial.state}")
    open_trial(s, trial_id, request.attempt)
    study = s.get(StudyRow, trial.study_id)
    assert study is not None  # foreign key
    error = request.error
    if request.state == TrialState.STOPPED.value and not error:
        error = "stopped at the master's request"
    if request.state == TrialState.FAILED.value:
        trial.state, trial.error, trial.finished_at = request.state, error, utcnow()
        notify.trial_failed(trial)
        release_worker(s, trial)
        s.flush()
        reason = trip_if_failing(s, study, trial, environment=request.environment)
        if reason is not None:
            log.info("study %s paused: %s", study.name, reason)
        stages.advance(s, study)
    else:
        _end(s, study, trial, request.state, error)
        if request.state != TrialState.DIVERGED.value:
            _note_unsaved_best(s, trial)
    return ReportAck(stored=True)


UNSAVED_BEST = "best_epoch_unsaved"


def _note_unsaved_best(s: Session, trial: TrialRow) -> None:
    """A trial that kept checkpoints, but none of its best epoch, says so: the ranked
    table names that epoch, and the model a user loads would be another's."""
    if trial.best_epoch is None:
        return
    epochs = set(s.scalars(select(CheckpointRow.epoch).where(CheckpointRow.trial_id == trial.id)))
    if not epochs or trial.best_epoch in epochs:
        return
    message = (
        f"best epoch {trial.best_epoch} has no checkpoint (saved: epochs "
        f"{', '.join(str(e) for e in sorted(epochs))}): pass checkpoint= to "
        "trial.report, or call trial.save, in every epoch you may want"
    )
    note = {"code": UNSAVED_BEST, "message": message, "epoch": trial.best_epoch}
    others = [w for w in trial.warnings or [] if w.get("code") != UNSAVED_BEST]
    trial.warnings = [*others, note]


def _end(s: Session, study: StudyRow, trial: TrialRow, state: str, error: str | None) -> None:
    """The trial is over: free its worker, and close its stage if it was the last."""
    trial.state, trial.error, trial.finished_at = state, error, utcnow()
    release_worker(s, trial)
    s.flush()
    stages.advance(s, study)


def _must_stop(s: Session, study: StudyRow, trial: TrialRow) -> bool:
    if study.state == StudyState.STOPPED.value and not TrialState(trial.state).is_finished():
        trial.state = TrialState.STOPPED.value
        trial.error = "the study was stopped"
        trial.finished_at = utcnow()
    return TrialState(trial.state).is_finished()


def _record_checkpoint(
    batch: Batch, store: CheckpointStore, study: StudyRow, trial: TrialRow, report: EpochReport
) -> None:
    s = batch.session
    info = report.checkpoint
    assert info is not None
    expected = f"{study.name}/{trial_folder(trial.number)}/"
    if not info.relpath.startswith(expected) or ".." in info.relpath.split("/"):
        raise SpecError(f"checkpoint: path must lie in {expected}, got {info.relpath!r}")
    score = study.objective.score(report.named_metrics())
    if score is None:
        raise SpecError("checkpoint: a checkpoint needs a finite score")
    old = s.scalar(
        select(CheckpointRow).where(
            CheckpointRow.trial_id == trial.id, CheckpointRow.epoch == report.epoch
        )
    )
    if old is not None:  # a resumed attempt wrote this epoch again
        old.path, old.size, old.sha256 = info.relpath, info.size, info.sha256
        old.score, old.attempt, old.deleted_at, old.deleted_why = score, report.attempt, None, None
    else:
        s.add(
            CheckpointRow(
                trial_id=trial.id,
                attempt=report.attempt,
                epoch=report.epoch,
                score=score,
                path=info.relpath,
                size=info.size,
                sha256=info.sha256,
            )
        )
    s.flush()
    gone = retain(s, study, trial)
    if gone:
        batch.after_commit(partial(delete_files, store, gone))


def _stored(s: Session, trial_id: int, epoch: int) -> bool:
    """Whether (trial, epoch) has its row: in the database, or added earlier in this
    transaction (by a job whose savepoint held; a rolled-back job's row left the
    session). Without flushing: a batch's rows go to the database together."""
    pending = s.info.get("epochs", {}).get((trial_id, epoch))
    if pending is not None and pending in s:
        return True
    known = s.info.get("checked", {}).get(trial_id)
    if known is not None and epoch in known[0]:
        return epoch in known[1]  # `prefetch_stored` asked the database already
    with s.no_autoflush:
        found = s.scalar(
            select(EpochMetricRow.id).where(
                EpochMetricRow.trial_id == trial_id, EpochMetricRow.epoch == epoch
            )
        )
    return found is not None


def prefetch_stored(s: Session, trial_id: int, epochs: list[int]) -> None:
    """Ask once which of a batch's epochs the database holds (not one query a report)."""
    with s.no_autoflush:
        found = set(
            s.scalars(
                select(EpochMetricRow.epoch).where(
                    EpochMetricRow.trial_id == trial_id, EpochMetricRow.epoch.in_(epochs)
                )
            )
        )
    s.info.setdefault("checked", {})[trial_id] = (set(epochs), found)


def _number(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _merge_warnings(trial: TrialRow, report: EpochReport) -> None:
    """Add a report's findings whose code the trial does not have yet (first one wins)."""
    if report.warnings:
        seen = {w.get("code") for w in trial.warnings or []}
        fresh = [w for w in report.warnings if w.get("code") not in seen]
        trial.warnings = [*(trial.warnings or []), *fresh]
