"""Checkpoint retention: each trial keeps its best and its latest checkpoint.

The decision is made in the transaction that records a new checkpoint (the rows of the
others are marked deleted, with why); the files go only after that transaction
commits (`Batch.after_commit`), outside the write lock: a failed commit deletes nothing,
and a slow object store never holds up other writes. A file that cannot be
deleted then stays behind as an orphan, logged; its row says why it was let go.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from gridless.common.checkpoints import CheckpointStore
from gridless.common.db import CheckpointRow, StudyRow, TrialRow, utcnow
from gridless.common.errors import GridlessError

__all__ = ["REASON", "delete_files", "retain"]

log = logging.getLogger(__name__)

REASON = "retention: neither the best nor the latest of its trial"


def retain(s: Session, study: StudyRow, trial: TrialRow) -> list[str]:
    """Mark every live checkpoint of `trial` but its best and latest deleted; the store
    paths whose files must go once this transaction has committed."""
    live = list(
        s.scalars(
            select(CheckpointRow).where(
                CheckpointRow.trial_id == trial.id, CheckpointRow.deleted_at.is_(None)
            )
        )
    )
    if len(live) <= 2:
        return []
    latest = max(live, key=lambda c: c.epoch)
    best = study.objective.best(live, key=lambda c: (c.score, -c.epoch))
    gone = []
    for ck in live:
        if ck.id in (latest.id, best.id):
            continue
        ck.deleted_at = utcnow()
        ck.deleted_why = REASON
        gone.append(ck.path)
    return gone


def delete_files(store: CheckpointStore, paths: list[str]) -> None:
    """Delete the files retention let go (after the commit); failures are logged."""
    for path in paths:
        try:
            store.delete(path)
        except (OSError, GridlessError) as exc:
            log.warning("cannot delete %s (its row is marked deleted): %s", path, exc)
