"""The master's services over the database: studies, stages, claims, reports, ranking.

The master is the database's only writer; state-changing calls are serialized by one
lock (SQLite has one writer anyway), and each runs in one transaction, so a 2xx answer
means the change is committed.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, sessionmaker

from common.db import (
    CheckpointRow,
    EpochMetricRow,
    StageRow,
    StudyRow,
    TrialRow,
    session_scope,
    utcnow,
)
from common.errors import ConflictError, NotFoundError, SpecError
from common.protocol import (
    Assignment,
    ClaimResponse,
    EpochReport,
    FinishRequest,
    ReportAck,
    StartRequest,
)
from common.space import parse_space, space_to_json
from common.spec import StudySpec
from common.states import StageState, StudyState, TrialState
from master.narrowing import NarrowingPolicy, border_flags, narrow_space

__all__ = ["Progress", "StudyService"]

log = logging.getLogger(__name__)

WAIT_S = 0.2


@dataclass(frozen=True)
class Progress:
    """How far a study is: finished trials out of the total, and the stage running."""

    finished: int
    total: int
    stage: int | None
    stages: int
    best: float | None
    state: str


def _ranked(study: StudyRow) -> Select[TrialRow]:
    score = TrialRow.best_score
    order = score.desc().nulls_last() if study.maximize else score.asc().nulls_last()
    return select(TrialRow).where(TrialRow.study_id == study.id).order_by(order, TrialRow.number)


class StudyService:
    """Every operation the routes and the CLI perform on studies and trials."""

    def __init__(
        self, sessions: sessionmaker[Session], policy: NarrowingPolicy | None = None
    ) -> None:
        self.sessions = sessions
        self.policy = policy or NarrowingPolicy()
        self._write_lock = threading.Lock()

    # -- studies -----------------------------------------------------------------------

    def create_study(self, spec: StudySpec) -> StudyRow:
        """Store a new study with its stages; the first stage starts at once.

        Raises:
            ConflictError: when a study of that name exists.
        """
        with self._write_lock, session_scope(self.sessions) as s:
            if s.scalar(select(StudyRow.id).where(StudyRow.name == spec.name)) is not None:
                raise ConflictError(f"a study named {spec.name!r} exists")
            study = StudyRow(
                name=spec.name,
                spec=spec.model_dump(mode="json"),
                metric=spec.metric,
                maximize=spec.maximize,
                seed=spec.seed,
                state=StudyState.RUNNING.value,
                next_trial_number=0,
            )
            s.add(study)
            s.flush()
            for index, stage in enumerate(spec.stages):
                s.add(
                    StageRow(
                        study_id=study.id,
                        index=index,
                        trials=stage.trials,
                        epochs=stage.epochs,
                        space=space_to_json(spec.distributions()) if index == 0 else {},
                        state=(StageState.RUNNING if index == 0 else StageState.WAITING).value,
                        decisions={},
                    )
                )
            return study

    def get_study(self, study_id: int) -> StudyRow:
        with session_scope(self.sessions) as s:
            study = s.get(StudyRow, study_id)
            if study is None:
                raise NotFoundError(f"no study {study_id}")
            return study

    def find_study(self, name: str) -> StudyRow:
        with session_scope(self.sessions) as s:
            study = s.scalar(select(StudyRow).where(StudyRow.name == name))
            if study is None:
                raise NotFoundError(f"no study named {name!r}")
            return study

    def list_studies(self, *, limit: int, offset: int) -> tuple[list[StudyRow], int]:
        with session_scope(self.sessions) as s:
            rows = s.scalars(select(StudyRow).order_by(StudyRow.id).limit(limit).offset(offset))
            count = s.scalar(select(func.count()).select_from(StudyRow)) or 0
            return list(rows), count

    def stages(self, study_id: int) -> list[StageRow]:
        self.get_study(study_id)
        with session_scope(self.sessions) as s:
            return list(
                s.scalars(
                    select(StageRow).where(StageRow.study_id == study_id).order_by(StageRow.index)
                )
            )

    def warning_counts(self, study_id: int) -> dict[str, int]:
        """How many trials of a study raised each warning code."""
        with session_scope(self.sessions) as s:
            counts: dict[str, int] = {}
            rows = s.scalars(
                select(TrialRow.warnings).where(
                    TrialRow.study_id == study_id, TrialRow.warnings.is_not(None)
                )
            )
            for warnings in rows:
                for code in {w.get("code") for w in warnings or []}:
                    counts[str(code)] = counts.get(str(code), 0) + 1
            return dict(sorted(counts.items()))

    def progress(self, study_id: int) -> Progress:
        with session_scope(self.sessions) as s:
            study = s.get(StudyRow, study_id)
            if study is None:
                raise NotFoundError(f"no study {study_id}")
            finished_states = [st.value for st in TrialState if st.is_finished()]
            finished = s.scalar(
                select(func.count())
                .select_from(TrialRow)
                .where(TrialRow.study_id == study_id, TrialRow.state.in_(finished_states))
            )
            stages = list(s.scalars(select(StageRow).where(StageRow.study_id == study_id)))
            running = [st.index for st in stages if st.state == StageState.RUNNING.value]
            best_row = s.scalars(_ranked(study).limit(1)).first()
            return Progress(
                finished=finished or 0,
                total=sum(st.trials for st in stages),
                stage=running[0] if running else None,
                stages=len(stages),
                best=best_row.best_score if best_row is not None else None,
                state=study.state,
            )

    # -- trials for people -------------------------------------------------------------

    def ranked_trials(
        self, study_id: int, *, limit: int, offset: int, state: str | None = None
    ) -> tuple[list[TrialRow], int]:
        """A page of a study's trials, best first by the study's metric (ties: trial number)."""
        study = self.get_study(study_id)
        with session_scope(self.sessions) as s:
            query = _ranked(study)
            count_query = (
                select(func.count()).select_from(TrialRow).where(TrialRow.study_id == study_id)
            )
            if state is not None:
                query = query.where(TrialRow.state == state)
                count_query = count_query.where(TrialRow.state == state)
            rows = list(s.scalars(query.limit(limit).offset(offset)))
            return rows, s.scalar(count_query) or 0

    def get_trial(self, trial_id: int) -> TrialRow:
        with session_scope(self.sessions) as s:
            trial = s.get(TrialRow, trial_id)
            if trial is None:
                raise NotFoundError(f"no trial {trial_id}")
            return trial

    def trial_metrics(self, trial_id: int) -> list[EpochMetricRow]:
        self.get_trial(trial_id)
        with session_scope(self.sessions) as s:
            return list(
                s.scalars(
                    select(EpochMetricRow)
                    .where(EpochMetricRow.trial_id == trial_id)
                    .order_by(EpochMetricRow.epoch)
                )
            )

    def trial_checkpoints(self, trial_id: int) -> list[CheckpointRow]:
        self.get_trial(trial_id)
        with session_scope(self.sessions) as s:
            return list(
                s.scalars(
                    select(CheckpointRow)
                    .where(CheckpointRow.trial_id == trial_id)
                    .order_by(CheckpointRow.epoch)
                )
            )

    # -- the worker protocol -----------------------------------------------------------

    def claim(self, worker_id: str) -> ClaimResponse:
        """Hand the worker a new trial of the oldest running study, or say wait or stop."""
        with self._write_lock, session_scope(self.sessions) as s:
            study = s.scalar(
                select(StudyRow)
                .where(StudyRow.state == StudyState.RUNNING.value)
                .order_by(StudyRow.id)
                .limit(1)
            )
            while study is not None:
                stage = s.scalar(
                    select(StageRow).where(
                        StageRow.study_id == study.id, StageRow.state == StageState.RUNNING.value
                    )
                )
                if stage is None:
                    study.state = StudyState.COMPLETED.value
                    study.finished_at = utcnow()
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
                    return ClaimResponse(action="wait", retry_after_s=WAIT_S)
            return ClaimResponse(action="stop")

    def _assign(
        self, s: Session, study: StudyRow, stage: StageRow, worker_id: str
    ) -> ClaimResponse:
        trial = TrialRow(
            study_id=study.id,
            stage_id=stage.id,
            warnings=[],
            number=study.next_trial_number,
            state=TrialState.PENDING.value,
            attempt=0,
            epochs=stage.epochs,
            worker_id=worker_id,
            heartbeat_at=utcnow(),
        )
        study.next_trial_number += 1
        s.add(trial)
        s.flush()
        spec = study.spec
        return ClaimResponse(
            action="train",
            assignment=Assignment(
                trial_id=trial.id,
                study=study.name,
                trial_number=trial.number,
                attempt=trial.attempt,
                seed=study.seed,
                model=spec["model"],
                dataset=spec["dataset"],
                metric=study.metric,
                epochs=stage.epochs,
                space=stage.space,
                fixed=spec.get("fixed", {}),
            ),
        )

    def _advance_if_done(self, s: Session, study: StudyRow, stage: StageRow) -> bool:
        """Close a stage whose trials all finished and open the next; False if still busy."""
        open_states = [st.value for st in TrialState if not st.is_finished()]
        busy = s.scalar(
            select(func.count())
            .select_from(TrialRow)
            .where(TrialRow.stage_id == stage.id, TrialRow.state.in_(open_states))
        )
        if busy:
            return False
        stage.state = StageState.DONE.value
        nxt = s.scalar(
            select(StageRow).where(
                StageRow.study_id == study.id, StageRow.index == stage.index + 1
            )
        )
        if nxt is None:
            study.state = StudyState.COMPLETED.value
            study.finished_at = utcnow()
            stage.decisions = {"flags": self._final_flags(s, study, stage), "decisions": []}
            return True
        scored = (
            s.scalar(
                select(func.count())
                .select_from(TrialRow)
                .where(TrialRow.stage_id == stage.id, TrialRow.best_score.is_not(None))
            )
            or 0
        )
        n_top = min(scored, max(self.policy.min_top, math.ceil(self.policy.top_fraction * scored)))
        top = list(
            s.scalars(
                _ranked(study)
                .where(TrialRow.stage_id == stage.id, TrialRow.best_score.is_not(None))
                .limit(n_top)
            )
        )
        space = parse_space(stage.space)
        new_space, flags, decisions = narrow_space(
            space, [t.params or {} for t in top], self.policy
        )
        stage.decisions = {
            "flags": [f.to_json() for f in flags],
            "decisions": [d.to_json() for d in decisions],
            "top_trials": [t.number for t in top],
        }
        nxt.space = space_to_json(new_space)
        nxt.state = StageState.RUNNING.value
        for flag in flags:
            log.info("stage %d: %s", stage.index, flag.message)
        return True

    def _final_flags(self, s: Session, study: StudyRow, stage: StageRow) -> list[dict[str, Any]]:
        """Border flags of the study's best trial against the last stage's ranges."""
        best = s.scalars(_ranked(study).where(TrialRow.best_score.is_not(None)).limit(1)).first()
        if best is None or not best.params:
            return []
        return [
            f.to_json() for f in border_flags(parse_space(stage.space), best.params, self.policy)
        ]

    def _load_open_trial(self, s: Session, trial_id: int, attempt: int) -> TrialRow:
        trial = s.get(TrialRow, trial_id)
        if trial is None:
            raise NotFoundError(f"no trial {trial_id}")
        if TrialState(trial.state).is_finished():
            raise ConflictError(f"trial {trial_id} is {trial.state}")
        if attempt != trial.attempt:
            raise ConflictError(
                f"trial {trial_id} attempt {attempt} is superseded by {trial.attempt}"
            )
        return trial

    def start_trial(self, trial_id: int, request: StartRequest) -> ReportAck:
        """Register the sampled parameters; the trial runs. Repeats are no-ops."""
        with self._write_lock, session_scope(self.sessions) as s:
            trial = self._load_open_trial(s, trial_id, request.attempt)
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
            return ReportAck(stored=True)

    def record_report(self, trial_id: int, report: EpochReport) -> ReportAck:
        """Store one epoch's metrics (and its checkpoint) once; a repeat answers stored=False."""
        with self._write_lock, session_scope(self.sessions) as s:
            trial = self._load_open_trial(s, trial_id, report.attempt)
            exists = s.scalar(
                select(EpochMetricRow.id).where(
                    EpochMetricRow.trial_id == trial_id, EpochMetricRow.epoch == report.epoch
                )
            )
            if exists is not None:
                return ReportAck(stored=False)
            study = s.get(StudyRow, trial.study_id)
            assert study is not None  # foreign key
            s.add(
                EpochMetricRow(
                    trial_id=trial_id,
                    attempt=report.attempt,
                    epoch=report.epoch,
                    train_loss=report.train_loss,
                    train_accuracy=report.train_accuracy,
                    val_loss=report.val_loss,
                    val_accuracy=report.val_accuracy,
                    seconds=report.seconds,
                    stats=report.stats,
                )
            )
            trial.last_epoch = max(trial.last_epoch, report.epoch)
            if report.warnings:
                seen = {w.get("code") for w in trial.warnings or []}
                fresh = [w for w in report.warnings if w.get("code") not in seen]
                trial.warnings = [*(trial.warnings or []), *fresh]
            trial.heartbeat_at = utcnow()
            trial.state = TrialState.RUNNING.value
            score = report.val_accuracy if study.metric == "val_accuracy" else report.val_loss
            if report.diverged:
                trial.state = TrialState.DIVERGED.value
                trial.finished_at = utcnow()
            elif score is not None:
                better = trial.best_score is None or (
                    score > trial.best_score if study.maximize else score < trial.best_score
                )
                if better:
                    trial.best_score = score
                    trial.best_epoch = report.epoch
            if report.checkpoint is not None:
                if score is None:
                    raise SpecError("checkpoint: a checkpoint needs a finite score")
                s.add(
                    CheckpointRow(
                        trial_id=trial_id,
                        epoch=report.epoch,
                        score=score,
                        path=report.checkpoint.relpath,
                        size=report.checkpoint.size,
                        sha256=report.checkpoint.sha256,
                    )
                )
            return ReportAck(stored=True, stop=study.state != StudyState.RUNNING.value)

    def finish_trial(self, trial_id: int, request: FinishRequest) -> ReportAck:
        """Mark a trial finished; a repeat of the same final state is a no-op."""
        with self._write_lock, session_scope(self.sessions) as s:
            trial = s.get(TrialRow, trial_id)
            if trial is None:
                raise NotFoundError(f"no trial {trial_id}")
            if TrialState(trial.state).is_finished():
                if trial.state == request.state and trial.attempt == request.attempt:
                    return ReportAck(stored=False)
                raise ConflictError(f"trial {trial_id} is {trial.state}")
            self._load_open_trial(s, trial_id, request.attempt)
            trial.state = request.state
            trial.error = request.error
            trial.finished_at = utcnow()
            return ReportAck(stored=True)
