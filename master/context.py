"""What the master's services share: sessions, the write lock, the store, the policies."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Select, select
from sqlalchemy.orm import Session, sessionmaker

from gridless.common.checkpoints import CheckpointStore
from gridless.common.db import CheckpointRow, StudyRow, TrialRow
from gridless.common.errors import NotFoundError

__all__ = [
    "MasterContext",
    "cached_get",
    "count_warning_codes",
    "live_checkpoint",
    "load_study",
    "ranked",
]

M = TypeVar("M")


@dataclass
class MasterContext:
    """One database (the master is its only writer) and one checkpoint store.

    The worker protocol's writes go through one writer (`master.writer`), which holds
    `write_lock` for each batch; the services' own writes (creating or pausing a study)
    take it too, so the read-then-write logic of claims and stages never interleaves.
    """

    sessions: sessionmaker[Session]
    store: CheckpointStore
    heartbeat_interval_s: float = 5.0
    write_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def grace_s(self) -> float:
        """A trial is lost after this long without a heartbeat (3x the interval)."""
        return 3.0 * self.heartbeat_interval_s


def cached_get(s: Session, model: type[M], key: Any) -> M | None:
    """`s.get(model, key)`, remembered for the session's life.

    The session's identity map holds rows weakly: a trial or worker row no request
    references any more is dropped and loaded again by the next report of the same
    transaction. The writer runs many reports in one session, so it keeps them.
    """
    cache: dict[tuple[type[Any], Any], Any] = s.info.setdefault("rows", {})
    row = cache.get((model, key))
    if row is None or row not in s:  # new in a job whose savepoint rolled back: gone
        row = s.get(model, key)
        if row is not None:
            cache[(model, key)] = row
    return row


def live_checkpoint(s: Session, path: str) -> tuple[CheckpointRow, TrialRow]:
    """The live (recorded, not deleted) checkpoint stored under exactly `path`.

    Raises:
        NotFoundError: for any other path; traversal tricks can only miss.
    """
    if not path or len(path) > 512 or "\\" in path or "\x00" in path:
        raise NotFoundError(f"no checkpoint {path[:100]!r}")
    row = s.execute(
        select(CheckpointRow, TrialRow)
        .join(TrialRow, TrialRow.id == CheckpointRow.trial_id)
        .where(CheckpointRow.path == path, CheckpointRow.deleted_at.is_(None))
    ).first()
    if row is None:
        raise NotFoundError(f"no checkpoint {path[:100]!r}")
    return row[0], row[1]


def count_warning_codes(warning_lists: Iterable[list[dict[str, Any]] | None]) -> dict[str, int]:
    """How many trials raised each warning code (a trial counts once per code)."""
    counts: dict[str, int] = {}
    for warnings in warning_lists:
        for code in {w.get("code") for w in warnings or []}:
            counts[str(code)] = counts.get(str(code), 0) + 1
    return dict(sorted(counts.items()))


def load_study(s: Session, study_id: int) -> StudyRow:
    study = s.get(StudyRow, study_id)
    if study is None:
        raise NotFoundError(f"no study {study_id}")
    return study


def ranked(study: StudyRow) -> Select[TrialRow]:
    """A study's trials, best first by its metric; unscored last; ties by trial number.
    The score is the selection score: the best score, or the mean over seeds of a
    re-scored configuration (master/rescore.py)."""
    score = TrialRow.selection_score
    order = study.objective.order_by(score).nulls_last()
    return select(TrialRow).where(TrialRow.study_id == study.id).order_by(order, TrialRow.number)
