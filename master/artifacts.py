"""Checkpoints and ensembles of a study, for people: the checkpoint browser's queries and
the ensemble reports (a part of `StudyService`; the builds are jobs, master/ensemble_jobs.py)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from gridless.common.db import (
    CheckpointRow,
    EnsembleRow,
    StudyRow,
    TrialRow,
    session_scope,
)
from gridless.common.errors import ConflictError, NotFoundError
from gridless.common.states import StudyState
from gridless.master.context import MasterContext, live_checkpoint, load_study, ranked

__all__ = ["ArtifactQueries"]


class ArtifactQueries:
    """The checkpoint and ensemble half of `StudyService`."""

    context: MasterContext
    sessions: sessionmaker[Session]

    # -- checkpoints -------------------------------------------------------------------

    def study_checkpoints(
        self,
        study_id: int,
        *,
        limit: int,
        offset: int,
        trial_id: int | None = None,
        trial_number: int | None = None,
    ) -> tuple[list[tuple[CheckpointRow, TrialRow]], int]:
        """Live checkpoints of a study, best score first (the order of their file names:
        `sort -r` for accuracy, `sort` for loss), then epoch."""
        with session_scope(self.sessions) as s:
            study = load_study(s, study_id)
            conditions = [TrialRow.study_id == study_id, CheckpointRow.deleted_at.is_(None)]
            if trial_id is not None:
                conditions.append(TrialRow.id == trial_id)
            if trial_number is not None:
                conditions.append(TrialRow.number == trial_number)
            score = study.objective.order_by(CheckpointRow.score)
            query = (
                select(CheckpointRow, TrialRow)
                .join(TrialRow, TrialRow.id == CheckpointRow.trial_id)
                .where(*conditions)
                .order_by(score, CheckpointRow.epoch.desc(), TrialRow.number)
                .limit(limit)
                .offset(offset)
            )
            rows = [(ck, trial) for ck, trial in s.execute(query)]
            count = (
                s.scalar(
                    select(func.count())
                    .select_from(CheckpointRow)
                    .join(TrialRow, TrialRow.id == CheckpointRow.trial_id)
                    .where(*conditions)
                )
                or 0
            )
            return rows, count

    def recorded_checkpoint(self, path: str) -> tuple[CheckpointRow, TrialRow]:
        """The live checkpoint recorded under exactly `path`; anything else is 404 (so no
        traversal, encoding trick or symlink reaches a file the database does not name).

        Raises:
            NotFoundError: for a path no live checkpoint has.
        """
        with session_scope(self.sessions) as s:
            return live_checkpoint(s, path)

    # -- ensembles ---------------------------------------------------------------------

    def ensemble_inputs(
        self, study_id: int, k: int
    ) -> tuple[StudyRow, list[tuple[TrialRow, str]]]:
        """The top `k` trials by validation score, each with its best live checkpoint
        (an ensemble job's members, master/ensemble_jobs.py, which saves the report).

        Raises:
            ConflictError: while the study still runs.
        """
        with session_scope(self.sessions) as s:
            study = load_study(s, study_id)
            if study.state != StudyState.COMPLETED.value:
                raise ConflictError(
                    f"study {study_id} is {study.state}; ensembles need a completed study"
                )
            best_first = study.objective.order_by(CheckpointRow.score)
            chosen: list[tuple[TrialRow, str]] = []
            for trial in s.scalars(ranked(study).where(TrialRow.best_score.is_not(None))):
                path = s.scalar(
                    select(CheckpointRow.path)
                    .where(CheckpointRow.trial_id == trial.id, CheckpointRow.deleted_at.is_(None))
                    .order_by(best_first, CheckpointRow.epoch)
                    .limit(1)
                )
                if path is not None:
                    chosen.append((trial, path))
                if len(chosen) == k:
                    break
            return study, chosen

    def has_ensembles(self, study_id: int) -> bool:
        with session_scope(self.sessions) as s:
            query = select(EnsembleRow.id).where(EnsembleRow.study_id == study_id).limit(1)
            return s.scalar(query) is not None

    def latest_ensembles(self, study_id: int) -> EnsembleRow:
        with session_scope(self.sessions) as s:
            load_study(s, study_id)
            row = s.scalar(
                select(EnsembleRow)
                .where(EnsembleRow.study_id == study_id)
                .order_by(EnsembleRow.id.desc())
                .limit(1)
            )
            if row is None:
                raise NotFoundError(f"no ensembles built for study {study_id}; POST to build them")
            return row
