"""Which workers and trials are alive: heartbeats, the reaper that turns silent trials
into lost ones (resumed by the next claim), and dead workers' trials lost at once.

Functions of one session; `master.protocol` runs them in the writer's transactions.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from gridless.common.db import StudyRow, TrialRow, WorkerRow, utcnow
from gridless.common.errors import NotFoundError
from gridless.common.messages import HeartbeatRequest, ReportAck
from gridless.common.states import StudyState, TrialState
from gridless.master.context import cached_get

__all__ = ["heartbeat", "reap", "release_worker", "touch_worker", "worker_gone"]

log = logging.getLogger(__name__)

_ALIVE = [TrialState.PENDING.value, TrialState.RUNNING.value]


def touch_worker(s: Session, worker_id: str) -> WorkerRow:
    """The worker's row (made on first contact), its heartbeat now."""
    worker = cached_get(s, WorkerRow, worker_id)
    if worker is None:
        worker = WorkerRow(id=worker_id, state="idle", trials_run=0)
        s.add(worker)
        s.info.setdefault("rows", {})[(WorkerRow, worker_id)] = worker
    elif worker.state in ("lost",):
        worker.state = "idle"
    worker.heartbeat_at = utcnow()
    return worker


def release_worker(s: Session, trial: TrialRow) -> None:
    """The trial ended: its worker is idle and has run one more."""
    if trial.worker_id is None:
        return
    worker = s.get(WorkerRow, trial.worker_id)
    if worker is not None and worker.trial_id == trial.id:
        worker.trial_id = None
        worker.state = "idle"
        worker.trials_run += 1


def heartbeat(s: Session, request: HeartbeatRequest) -> ReportAck:
    """A worker is alive (and so is its trial); `stop` asks it to end that trial."""
    worker = touch_worker(s, request.worker_id)
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


def reap(s: Session, cutoff: dt.datetime) -> list[int]:
    """Mark open trials whose heartbeat is older than `cutoff` lost, and their silent
    workers; returns the trials' ids."""
    stale = list(
        s.scalars(
            select(TrialRow).where(TrialRow.state.in_(_ALIVE), TrialRow.heartbeat_at < cutoff)
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


def worker_gone(s: Session, worker_id: str, state: str) -> list[int]:
    """A worker died or was killed: its open trials are lost at once (no waiting for
    heartbeats) and resume on another worker."""
    worker = s.get(WorkerRow, worker_id)
    if worker is not None:
        worker.state, worker.trial_id = state, None
    trials = list(
        s.scalars(
            select(TrialRow).where(TrialRow.worker_id == worker_id, TrialRow.state.in_(_ALIVE))
        )
    )
    for trial in trials:
        trial.state = TrialState.LOST.value
        log.warning("trial %s lost: its worker %s is %s", trial.number, worker_id, state)
    return [t.id for t in trials]
