"""What the master's services share: sessions, the write lock, the store, the policies."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from sqlalchemy import Select, select
from sqlalchemy.orm import Session, sessionmaker

from common.checkpoints import CheckpointStore
from common.db import StudyRow, TrialRow
from common.errors import NotFoundError

__all__ = ["Storage", "load_study", "ranked"]


@dataclass
class Storage:
    """One database (the master is its only writer) and one checkpoint store.

    State-changing calls take `write_lock`: SQLite has a single writer anyway, and the
    claim/advance logic reads then writes, so it must not interleave.
    """

    sessions: sessionmaker[Session]
    store: CheckpointStore
    heartbeat_interval_s: float = 5.0
    write_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def grace_s(self) -> float:
        """A trial is lost after this long without a heartbeat (3x the interval)."""
        return 3.0 * self.heartbeat_interval_s


def load_study(s: Session, study_id: int) -> StudyRow:
    study = s.get(StudyRow, study_id)
    if study is None:
        raise NotFoundError(f"no study {study_id}")
    return study


def ranked(study: StudyRow) -> Select[TrialRow]:
    """A study's trials, best first by its metric; unscored last; ties by trial number."""
    score = TrialRow.best_score
    order = score.desc().nulls_last() if study.maximize else score.asc().nulls_last()
    return select(TrialRow).where(TrialRow.study_id == study.id).order_by(order, TrialRow.number)
