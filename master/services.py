"""Studies for people: create, pause, resume, stop, and paginated queries over trials."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select

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
from gridless.common.errors import ConflictError, NotFoundError
from gridless.common.space import space_to_json
from gridless.common.spec import StudySpec
from gridless.common.states import StageState, StudyState, TrialState
from gridless.master import analysis, notify
from gridless.master.artifacts import ArtifactQueries
from gridless.master.context import MasterContext, load_study, ranked
from gridless.master.importance import Importance
from gridless.master.narrowing import BorderFlag, RaisedFlag
from gridless.master.study_edits import StudyEdits, warm_ranges
from gridless.master.trial_query import SORT_FIELDS, ParamRange, trial_query

__all__ = ["SORT_FIELDS", "ParamRange", "Progress", "StudyService"]


@dataclass(frozen=True)
class Progress:
    """How far a study is: finished trials out of the total, and the stage running."""

    finished: int
    total: int
    stage: int | None
    stages: int
    best: float | None
    state: str


class StudyService(ArtifactQueries, StudyEdits):
    """Every study-level operation the routes and the CLI perform (checkpoints and
    ensembles in `master.artifacts`, extensions and space edits in `master.study_edits`)."""

    def __init__(self, context: MasterContext) -> None:
        self.context = context
        self.sessions = context.sessions
        self.importance = Importance(context.sessions)
        self._metric_names = analysis.MetricNames()

    # -- studies -----------------------------------------------------------------------

    def create_study(self, spec: StudySpec) -> StudyRow:
        """Store a new study with its stages; the first stage starts at once.

        Raises:
            ConflictError: when a study of that name exists.
        """
        with self.context.write_lock, session_scope(self.sessions) as s:
            if s.scalar(select(StudyRow.id).where(StudyRow.name == spec.name)) is not None:
                raise ConflictError(f"a study named {spec.name!r} exists")
            study = StudyRow(
                name=spec.name,
                spec=spec.model_dump(mode="json"),
                metric=spec.objective.name,
                maximize=spec.maximize,
                seed=spec.seed,
                state=StudyState.RUNNING.value,
                next_trial_number=0,
            )
            s.add(study)
            s.flush()
            first_space = space_to_json(spec.distributions())
            if spec.warm_start is not None:
                first_space = warm_ranges(s, spec, first_space)
            for index, stage in enumerate(spec.stages):
                s.add(
                    StageRow(
                        study_id=study.id,
                        index=index,
                        trials=stage.trials,
                        epochs=stage.epochs,
                        space=first_space if index == 0 else {},
                        state=(StageState.RUNNING if index == 0 else StageState.WAITING).value,
                        decisions={},
                    )
                )
            return study

    def get_study(self, study_id: int) -> StudyRow:
        with session_scope(self.sessions) as s:
            return load_study(s, study_id)

    def list_studies(self, *, limit: int, offset: int) -> tuple[list[StudyRow], int]:
        with session_scope(self.sessions) as s:
            rows = s.scalars(select(StudyRow).order_by(StudyRow.id).limit(limit).offset(offset))
            count = s.scalar(select(func.count()).select_from(StudyRow)) or 0
            return list(rows), count

    def set_state(self, study_id: int, action: str) -> StudyRow:
        """`pause` (no new trials), `resume`, or `stop` (running trials stop at their next
        report; the study is over).

        Raises:
            ConflictError: for an action the study's state does not allow.
        """
        allowed = {
            "pause": ({StudyState.RUNNING}, StudyState.PAUSED),
            "resume": ({StudyState.PAUSED}, StudyState.RUNNING),
            "stop": ({StudyState.RUNNING, StudyState.PAUSED}, StudyState.STOPPED),
        }
        sources, target = allowed[action]
        with self.context.write_lock, session_scope(self.sessions) as s:
            study = load_study(s, study_id)
            if StudyState(study.state) not in sources:
                raise ConflictError(f"cannot {action} study {study_id}: it is {study.state}")
            study.state = target.value
            study.state_reason = None  # a person's action replaces gridless's reason
            if action == "resume":  # the circuit breaker counts afresh
                study.breaker_from = study.next_trial_number
            if target is StudyState.STOPPED:
                study.finished_at = utcnow()
                notify.study_finished(study)
            return study

    def continue_interrupted(self) -> tuple[StudyRow, str]:
        """Reopen the newest study of this database after its run was interrupted (a
        Ctrl-C, a crash) or paused: trials that were running become lost, so the next
        claims resume them from their latest checkpoints; a paused study runs again.

        Raises:
            NotFoundError: for a database without studies.
            ConflictError: when the study already ended.
        """
        with self.context.write_lock, session_scope(self.sessions) as s:
            study = s.scalar(select(StudyRow).order_by(StudyRow.id.desc()).limit(1))
            if study is None:
                raise NotFoundError("this run has no study")
            if StudyState(study.state).is_finished():
                raise ConflictError(f"study {study.name!r} is {study.state}: nothing to resume")
            if study.state == StudyState.PAUSED.value:
                study.state, study.state_reason = StudyState.RUNNING.value, None
                study.breaker_from = study.next_trial_number
            open_states = [TrialState.PENDING.value, TrialState.RUNNING.value]
            interrupted = list(
                s.scalars(
                    select(TrialRow).where(
                        TrialRow.study_id == study.id, TrialRow.state.in_(open_states)
                    )
                )
            )
            for trial in interrupted:
                trial.state = TrialState.LOST.value
            for worker in s.scalars(
                select(WorkerRow).where(WorkerRow.state.in_(["idle", "busy"]))
            ):
                worker.state, worker.trial_id = "dead", None
            finished = s.scalar(
                select(func.count())
                .select_from(TrialRow)
                .where(
                    TrialRow.study_id == study.id,
                    TrialRow.state.in_([st.value for st in TrialState if st.is_finished()]),
                )
            )
            note = (
                f"study {study.name!r} goes on: {finished} trials finished are kept, "
                f"{len(interrupted)} interrupted resume from their latest checkpoints"
            )
            return study, note

    def stages(self, study_id: int) -> list[StageRow]:
        with session_scope(self.sessions) as s:
            load_study(s, study_id)
            query = select(StageRow).where(StageRow.study_id == study_id).order_by(StageRow.index)
            return list(s.scalars(query))

    def raised_flags(self, study_id: int) -> list[RaisedFlag]:
        """Every flag raised, with the stage after which it was raised."""
        stages = self.stages(study_id)
        return [
            RaisedFlag(BorderFlag.from_json(raw), stage.index + 1, stage.index == len(stages) - 1)
            for stage in stages
            for raw in stage.decisions.get("flags", [])
        ]

    def progress(self, study_id: int) -> Progress:
        with session_scope(self.sessions) as s:
            study = load_study(s, study_id)
            stages = list(s.scalars(select(StageRow).where(StageRow.study_id == study_id)))
            # By stage: the (stage, state) index answers it without reading the trials.
            finished = s.scalar(
                select(func.count())
                .select_from(TrialRow)
                .where(
                    TrialRow.stage_id.in_([st.id for st in stages]),
                    TrialRow.state.in_(analysis.FINISHED_STATES),
                )
            )
            running = [st.index for st in stages if st.state == StageState.RUNNING.value]
            best_row = s.scalars(ranked(study).limit(1)).first()
            return Progress(
                finished=finished or 0,
                total=sum(st.trials for st in stages),
                stage=running[0] if running else None,
                stages=len(stages),
                # the selection score: a re-scored configuration's mean over seeds
                best=best_row.selection_score if best_row is not None else None,
                state=study.state,
            )

    def warning_counts(self, study_id: int) -> dict[str, int]:
        """How many trials of a study raised each warning code (one SQL aggregation)."""
        with session_scope(self.sessions) as s:
            return analysis.warning_counts(s, study_id)

    def metric_names(self, study_id: int) -> list[str]:
        """Every metric name the study's trials reported, at any epoch."""
        with session_scope(self.sessions) as s:
            return self._metric_names.names(s, study_id)

    # -- analysis -----------------------------------------------------------

    def points(self, study_id: int) -> dict[str, Any]:
        """Every trial of the study as plot columns (`master.analysis.study_points`)."""
        with session_scope(self.sessions) as s:
            return analysis.study_points(s, load_study(s, study_id))

    def last_metrics(self, trial_ids: list[int]) -> dict[int, dict[str, Any]]:
        """Each trial's metrics at its last reported epoch, by trial id."""
        with session_scope(self.sessions) as s:
            return analysis.last_metrics(s, trial_ids)

    # -- trials ------------------------------------------------------------------------

    def list_trials(
        self,
        study_id: int,
        *,
        limit: int,
        offset: int,
        state: str | None = None,
        stage: int | None = None,
        params: list[ParamRange] | None = None,
        sort: str | None = None,
    ) -> tuple[list[TrialRow], int]:
        """A page of a study's trials: ranked best first unless `sort` says otherwise.

        Raises:
            SpecError: for a sort key outside the allow-list or an unknown parameter.
        """
        with session_scope(self.sessions) as s:
            study = load_study(s, study_id)
            query, conditions = trial_query(
                s, study, state=state, stage=stage, params=params, sort=sort
            )
            rows = list(s.scalars(query.limit(limit).offset(offset)))
            count = s.scalar(select(func.count()).select_from(TrialRow).where(*conditions)) or 0
            return rows, count

    def export_ids(
        self,
        study_id: int,
        *,
        state: str | None = None,
        stage: int | None = None,
        params: list[ParamRange] | None = None,
        sort: str | None = None,
    ) -> tuple[StudyRow, list[int]]:
        """The study and the ids of every trial that passes the filters, in list order:
        the snapshot an export streams (`master.export`), so a trial that finishes
        meanwhile neither moves nor shows twice.

        Raises:
            SpecError: for a sort key outside the allow-list or an unknown parameter.
        """
        with session_scope(self.sessions) as s:
            study = load_study(s, study_id)
            query, _ = trial_query(s, study, state=state, stage=stage, params=params, sort=sort)
            return study, list(s.scalars(query.with_only_columns(TrialRow.id)))

    def ranked_trials(
        self, study_id: int, *, limit: int, offset: int, state: str | None = None
    ) -> tuple[list[TrialRow], int]:
        """A page of trials best first by the study's metric (ties: trial number)."""
        return self.list_trials(study_id, limit=limit, offset=offset, state=state)

    def get_trial(self, trial_id: int) -> TrialRow:
        with session_scope(self.sessions) as s:
            trial = s.get(TrialRow, trial_id)
            if trial is None:
                raise NotFoundError(f"no trial {trial_id}")
            return trial

    def get_study_trial(self, study_id: int, number: int) -> TrialRow:
        """A trial by the number people see (trial N is trial N everywhere)."""
        with session_scope(self.sessions) as s:
            load_study(s, study_id)
            trial = s.scalar(
                select(TrialRow).where(TrialRow.study_id == study_id, TrialRow.number == number)
            )
            if trial is None:
                raise NotFoundError(f"study {study_id} has no trial {number}")
            return trial

    def trial_metrics(
        self, trial_id: int, *, limit: int = 10_000, offset: int = 0
    ) -> list[EpochMetricRow]:
        self.get_trial(trial_id)
        with session_scope(self.sessions) as s:
            query = (
                select(EpochMetricRow)
                .where(EpochMetricRow.trial_id == trial_id)
                .order_by(EpochMetricRow.epoch)
                .limit(limit)
                .offset(offset)
            )
            return list(s.scalars(query))

    def trial_checkpoints(
        self, trial_id: int, *, include_deleted: bool = False
    ) -> list[CheckpointRow]:
        self.get_trial(trial_id)
        with session_scope(self.sessions) as s:
            query = select(CheckpointRow).where(CheckpointRow.trial_id == trial_id)
            if not include_deleted:
                query = query.where(CheckpointRow.deleted_at.is_(None))
            return list(s.scalars(query.order_by(CheckpointRow.epoch)))

    def stage_index(self, study_id: int) -> dict[int, int]:
        """Stage row id -> 1-based stage number."""
        return {st.id: st.index + 1 for st in self.stages(study_id)}

    # -- workers -----------------------------------------------------------------------

    def list_workers(self) -> list[WorkerRow]:
        with session_scope(self.sessions) as s:
            return list(s.scalars(select(WorkerRow).order_by(WorkerRow.started_at, WorkerRow.id)))
