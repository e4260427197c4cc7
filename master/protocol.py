"""The worker protocol on the master: claim, start, report, finish, heartbeat, and the
reaper that turns silent trials into lost ones, resumed from their last checkpoint.

Protocol rules (DESIGN.md): finished states never change; a report is keyed by
(trial, attempt, epoch) and a repeat is a no-op that still answers 2xx; a report for a
finished trial or a superseded attempt gets 409; a 2xx means committed.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gridless.common.checkpoints import trial_folder
from gridless.common.db import (
    CheckpointRow,
    EpochMetricRow,
    StageRow,
    StudyRow,
    TrialRow,
    WorkerRow,
    session_scope,
    utcnow,
)
from gridless.common.errors import ConflictError, GridlessError, NotFoundError, SpecError
from gridless.common.protocol import (
    Assignment,
    ClaimResponse,
    EpochReport,
    FinishRequest,
    HeartbeatRequest,
    ReportAck,
    ResumePoint,
    StartRequest,
)
from gridless.common.space import parse_space, space_to_json
from gridless.common.states import StageState, StudyState, TrialState
from gridless.master.breaker import trip_if_failing
from gridless.master.early_stopping import should_stop
from gridless.master.narrowing import (
    NarrowingPolicy,
    border_flags,
    learning_rate_flags,
    narrow_space,
)
from gridless.master.storage import Storage, count_warning_codes, live_checkpoint, ranked
from gridless.master.tpe import suggest_tpe

__all__ = ["ParamSuggester", "TrialProtocol"]

log = logging.getLogger(__name__)

WAIT_S = 0.2
OPEN_STATES = [st.value for st in TrialState if not st.is_finished()]

# (session, study row, stage row, trial number) -> parameters, for model-based samplers
# (TPE); None lets the worker sample at random.
ParamSuggester = Callable[[Session, StudyRow, StageRow, int], dict[str, Any] | None]


class TrialProtocol:
    """The calls workers make, and the timers that keep trials honest."""

    def __init__(self, storage: Storage, *, suggester: ParamSuggester | None = None) -> None:
        self.storage = storage
        self.sessions = storage.sessions
        self.suggester = suggester or suggest_tpe

    def active_resources(self) -> tuple[float, float]:
        """(cpu, gpu) per worker for the oldest running study (1 CPU when none runs)."""
        with session_scope(self.sessions) as s:
            study = s.scalar(
                select(StudyRow)
                .where(StudyRow.state.in_([StudyState.RUNNING.value, StudyState.PAUSED.value]))
                .order_by(StudyRow.id)
                .limit(1)
            )
            wanted = (study.spec.get("resources") or {}) if study is not None else {}
        return float(wanted.get("cpu", 1.0)), float(wanted.get("gpu", 0.0))

    # -- claims ------------------------------------------------------------------------

    def claim(self, worker_id: str) -> ClaimResponse:
        """A lost trial to resume, a new trial of the oldest running study, wait or stop."""
        interval = self.storage.heartbeat_interval_s
        with self.storage.write_lock, session_scope(self.sessions) as s:
            worker = self._touch_worker(s, worker_id)
            answer = self._claim(s, worker_id)
            worker.state = "busy" if answer.assignment else "idle"
            worker.trial_id = answer.assignment.trial_id if answer.assignment else None
            return answer.model_copy(update={"heartbeat_interval_s": interval})

    def _claim(self, s: Session, worker_id: str) -> ClaimResponse:
        active = [StudyState.RUNNING.value, StudyState.PAUSED.value]
        studies = list(
            s.scalars(select(StudyRow).where(StudyRow.state.in_(active)).order_by(StudyRow.id))
        )
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
                return self._resume(s, study, lost, worker_id)
            while True:
                stage = s.scalar(
                    select(StageRow).where(
                        StageRow.study_id == study.id, StageRow.state == StageState.RUNNING.value
                    )
                )
                if stage is None:
                    self._complete(study)
                    break
                in_stage = (
                    s.scalar(
                        select(func.count())
                        .select_from(TrialRow)
                        .where(TrialRow.stage_id == stage.id)
                    )
                    or 0
                )
                if in_stage < stage.trials:
                    return self._assign(s, study, stage, worker_id)
                if not self._advance_if_done(s, study, stage):
                    break  # this study is busy; a later one may have work
        if any(st.state in active for st in studies):
            return ClaimResponse(action="wait", retry_after_s=WAIT_S)
        return ClaimResponse(action="stop")

    def _assignment(self, study: StudyRow, stage: StageRow, trial: TrialRow) -> Assignment:
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
        )

    def _assign(
        self, s: Session, study: StudyRow, stage: StageRow, worker_id: str
    ) -> ClaimResponse:
        number = study.next_trial_number
        params = self.suggester(s, study, stage, number)
        trial = TrialRow(
            study_id=study.id,
            stage_id=stage.id,
            number=number,
            state=TrialState.PENDING.value,
            attempt=0,
            epochs=stage.epochs,
            worker_id=worker_id,
            params=params,
            warnings=[],
            heartbeat_at=utcnow(),
        )
        study.next_trial_number += 1
        s.add(trial)
        s.flush()
        job = self._assignment(study, stage, trial)
        if params is not None:
            job.params = params
        return ClaimResponse(action="train", assignment=job)

    def _resume(
        self, s: Session, study: StudyRow, trial: TrialRow, worker_id: str
    ) -> ClaimResponse:
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
        job = self._assignment(study, stage, trial)
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

    def _complete(self, study: StudyRow) -> None:
        study.state = StudyState.COMPLETED.value
        study.finished_at = utcnow()

    def _advance_if_done(self, s: Session, study: StudyRow, stage: StageRow) -> bool:
        """Close a stage whose trials all finished and open the next; False if still busy."""
        busy = s.scalar(
            select(func.count())
            .select_from(TrialRow)
            .where(TrialRow.stage_id == stage.id, TrialRow.state.in_(OPEN_STATES))
        )
        if busy:
            return False
        policy = NarrowingPolicy.from_spec(study.spec.get("narrowing"))
        stage.state = StageState.DONE.value
        nxt = s.scalar(
            select(StageRow).where(
                StageRow.study_id == study.id, StageRow.index == stage.index + 1
            )
        )
        space = parse_space(stage.space)
        if nxt is None:
            best = s.scalars(
                ranked(study).where(TrialRow.best_score.is_not(None)).limit(1)
            ).first()
            flags = border_flags(space, best.params or {}, policy) if best is not None else []
            stage.decisions = {"flags": [f.to_json() for f in flags], "decisions": []}
            self._complete(study)
            return True
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
        return True

    # -- trial calls -------------------------------------------------------------------

    def _open_trial(self, s: Session, trial_id: int, attempt: int) -> TrialRow:
        trial = s.get(TrialRow, trial_id)
        if trial is None:
            raise NotFoundError(f"no trial {trial_id}")
        if TrialState(trial.state).is_finished():
            raise ConflictError(f"trial {trial_id} is {trial.state}")
        if attempt != trial.attempt:
            raise ConflictError(
                f"trial {trial_id} attempt {attempt} is superseded by {trial.attempt}"
            )
        if trial.state == TrialState.LOST.value:
            trial.state = TrialState.RUNNING.value  # its worker was slow, not gone: revive
        return trial

    def _touch_worker(self, s: Session, worker_id: str) -> WorkerRow:
        worker = s.get(WorkerRow, worker_id)
        if worker is None:
            worker = WorkerRow(id=worker_id, state="idle", trials_run=0)
            s.add(worker)
        elif worker.state in ("lost",):
            worker.state = "idle"
        worker.heartbeat_at = utcnow()
        return worker

    def start_trial(self, trial_id: int, request: StartRequest) -> ReportAck:
        """Register the sampled parameters; the trial runs. Repeats are no-ops."""
        with self.storage.write_lock, session_scope(self.sessions) as s:
            trial = self._open_trial(s, trial_id, request.attempt)
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
            self._touch_worker(s, request.worker_id).trial_id = trial_id
            return ReportAck(stored=True)

    def record_report(self, trial_id: int, report: EpochReport) -> ReportAck:
        """Store one epoch's metrics (and its checkpoint) once; a repeat answers stored=False."""
        with self.storage.write_lock, session_scope(self.sessions) as s:
            trial = self._open_trial(s, trial_id, report.attempt)
            study = s.get(StudyRow, trial.study_id)
            assert study is not None  # foreign key
            now = utcnow()
            trial.heartbeat_at = now
            self._touch_worker(s, report.worker_id)
            exists = s.scalar(
                select(EpochMetricRow.id).where(
                    EpochMetricRow.trial_id == trial_id, EpochMetricRow.epoch == report.epoch
                )
            )
            if exists is not None:
                # A resumed attempt re-trained this epoch: its metrics are not stored
                # again, but its checkpoint and findings (a skipped checkpoint) are.
                _merge_warnings(trial, report)
                if report.checkpoint is not None:
                    self._record_checkpoint(s, study, trial, report)
                return ReportAck(stored=False, stop=self._must_stop(study, trial))
            named = report.named_metrics()
            score = study.objective.score(named)
            s.add(
                EpochMetricRow(
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
            )
            trial.last_epoch = max(trial.last_epoch, report.epoch)
            trial.state = TrialState.RUNNING.value
            _merge_warnings(trial, report)
            if report.diverged:
                trial.state = TrialState.DIVERGED.value
                trial.finished_at = now
                self._release_worker(s, trial)
            elif score is not None and study.objective.better(score, trial.best_score):
                trial.best_score, trial.best_epoch = score, report.epoch
                trial.best_metrics = named
            elif trial.best_score is None:
                trial.best_metrics = named  # nothing scored yet: the latest epoch's numbers
            if report.checkpoint is not None:
                self._record_checkpoint(s, study, trial, report)
            s.flush()
            stop = self._must_stop(study, trial)
            if not stop and not report.diverged and score is not None:
                reason = should_stop(s, study, trial, report.epoch, score)
                if reason is not None:
                    trial.state = TrialState.STOPPED.value
                    trial.error = reason
                    trial.finished_at = now
                    self._release_worker(s, trial)
                    stop = True
            return ReportAck(stored=True, stop=stop)

    def _must_stop(self, study: StudyRow, trial: TrialRow) -> bool:
        if study.state == StudyState.STOPPED.value and not TrialState(trial.state).is_finished():
            trial.state = TrialState.STOPPED.value
            trial.error = "the study was stopped"
            trial.finished_at = utcnow()
        return TrialState(trial.state).is_finished()

    def _record_checkpoint(
        self, s: Session, study: StudyRow, trial: TrialRow, report: EpochReport
    ) -> None:
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
            old.score, old.attempt, old.deleted_at, old.deleted_why = (
                score,
                report.attempt,
                None,
                None,
            )
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
        self._retain(s, study, trial)

    def _retain(self, s: Session, study: StudyRow, trial: TrialRow) -> None:
        """Keep a trial's best and latest checkpoints; delete the rest and record why."""
        live = list(
            s.scalars(
                select(CheckpointRow).where(
                    CheckpointRow.trial_id == trial.id, CheckpointRow.deleted_at.is_(None)
                )
            )
        )
        if len(live) <= 2:
            return
        latest = max(live, key=lambda c: c.epoch)
        best = (max if study.maximize else min)(live, key=lambda c: (c.score, -c.epoch))
        for ck in live:
            if ck.id in (latest.id, best.id):
                continue
            try:
                self.storage.store.delete(ck.path)
            except (OSError, GridlessError) as exc:
                log.warning("cannot delete %s: %s", ck.path, exc)
                continue
            ck.deleted_at = utcnow()
            ck.deleted_why = "retention: neither the best nor the latest of its trial"

    def _release_worker(self, s: Session, trial: TrialRow) -> None:
        if trial.worker_id is None:
            return
        worker = s.get(WorkerRow, trial.worker_id)
        if worker is not None and worker.trial_id == trial.id:
            worker.trial_id = None
            worker.state = "idle"
            worker.trials_run += 1

    def finish_trial(self, trial_id: int, request: FinishRequest) -> ReportAck:
        """Mark a trial finished; a repeat of the same final state is a no-op."""
        with self.storage.write_lock, session_scope(self.sessions) as s:
            trial = s.get(TrialRow, trial_id)
            if trial is None:
                raise NotFoundError(f"no trial {trial_id}")
            if TrialState(trial.state).is_finished():
                if trial.attempt == request.attempt and trial.state in (request.state, "stopped"):
                    return ReportAck(stored=False, stop=True)
                raise ConflictError(f"trial {trial_id} is {trial.state}")
            self._open_trial(s, trial_id, request.attempt)
            trial.state = request.state
            trial.error = request.error
            if request.state == TrialState.STOPPED.value and not request.error:
                trial.error = "stopped at the master's request"
            trial.finished_at = utcnow()
            self._release_worker(s, trial)
            if request.state == TrialState.FAILED.value:
                study = s.get(StudyRow, trial.study_id)
                assert study is not None  # foreign key
                s.flush()
                reason = trip_if_failing(s, study, trial, environment=request.environment)
                if reason is not None:
                    log.info("study %s paused: %s", study.name, reason)
            return ReportAck(stored=True)

    def resume_checkpoint(self, path: str, epochs: int) -> TrialRow:
        """A new trial that continues from a recorded checkpoint for `epochs` more epochs;
        the next claim hands it out. A completed study reopens for it.

        Raises:
            NotFoundError: for a path no live checkpoint has.
            ConflictError: when the study was stopped.
        """
        with self.storage.write_lock, session_scope(self.sessions) as s:
            ck, source = live_checkpoint(s, path)
            study = s.get(StudyRow, source.study_id)
            assert study is not None
            if study.state == StudyState.STOPPED.value:
                raise ConflictError(
                    f"study {study.id} is stopped; resume it before its checkpoints"
                )
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

    # -- liveness ----------------------------------------------------------------------

    def heartbeat(self, request: HeartbeatRequest) -> ReportAck:
        """A worker is alive (and so is its trial); `stop` asks it to end that trial."""
        with self.storage.write_lock, session_scope(self.sessions) as s:
            worker = self._touch_worker(s, request.worker_id)
            if request.trial_id is None:
                return ReportAck(stored=True)
            trial = s.get(TrialRow, request.trial_id)
            if trial is None:
                raise NotFoundError(f"no trial {request.trial_id}")
            study = s.get(StudyRow, trial.study_id)
            assert study is not None
            if trial.attempt != request.attempt or TrialState(trial.state).is_finished():
                return ReportAck(stored=False, stop=True)
            trial.heartbeat_at = worker.heartbeat_at
            if trial.state == TrialState.LOST.value:
                trial.state = TrialState.RUNNING.value
            worker.trial_id, worker.state = trial.id, "busy"
            return ReportAck(stored=True, stop=study.state == StudyState.STOPPED.value)

    def reap(self, now: dt.datetime | None = None) -> list[int]:
        """Mark open trials whose heartbeat is older than the grace period lost (they are
        resumed by the next claim); returns their ids."""
        now = now or utcnow()
        cutoff = now - dt.timedelta(seconds=self.storage.grace_s)
        with self.storage.write_lock, session_scope(self.sessions) as s:
            stale = list(
                s.scalars(
                    select(TrialRow).where(
                        TrialRow.state.in_([TrialState.PENDING.value, TrialState.RUNNING.value]),
                        TrialRow.heartbeat_at < cutoff,
                    )
                )
            )
            for trial in stale:
                trial.state = TrialState.LOST.value
                log.warning("trial %s lost: no heartbeat from %s", trial.number, trial.worker_id)
            for worker in s.scalars(
                select(WorkerRow).where(
                    WorkerRow.state.in_(["idle", "busy"]), WorkerRow.heartbeat_at < cutoff
                )
            ):
                worker.state = "lost"
            return [t.id for t in stale]

    def worker_gone(self, worker_id: str, state: str = "dead") -> list[int]:
        """A worker died or was killed: its open trials are lost at once (no waiting for
        heartbeats) and resume on another worker."""
        with self.storage.write_lock, session_scope(self.sessions) as s:
            worker = s.get(WorkerRow, worker_id)
            if worker is not None:
                worker.state, worker.trial_id = state, None
            trials = list(
                s.scalars(
                    select(TrialRow).where(
                        TrialRow.worker_id == worker_id,
                        TrialRow.state.in_([TrialState.PENDING.value, TrialState.RUNNING.value]),
                    )
                )
            )
            for trial in trials:
                trial.state = TrialState.LOST.value
                log.warning("trial %s lost: its worker %s is %s", trial.number, worker_id, state)
            return [t.id for t in trials]


def _number(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _merge_warnings(trial: TrialRow, report: EpochReport) -> None:
    """Add a report's findings whose code the trial does not have yet (first one wins)."""
    if report.warnings:
        seen = {w.get("code") for w in trial.warnings or []}
        fresh = [w for w in report.warnings if w.get("code") not in seen]
        trial.warnings = [*(trial.warnings or []), *fresh]
