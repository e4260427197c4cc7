"""Trial and study states: one small state machine (DESIGN.md, protocol rules)."""

from __future__ import annotations

import enum

__all__ = ["JobState", "StageState", "StudyState", "TrialState"]


class TrialState(enum.StrEnum):
    """Life of a trial; finished states never change again."""

    PENDING = "pending"  # claimed, parameters not yet registered
    RUNNING = "running"
    COMPLETED = "completed"
    STOPPED = "stopped"  # stopped on purpose (early stopping, study stopped)
    DIVERGED = "diverged"  # non-finite or exploding loss
    FAILED = "failed"  # the trainer raised
    LOST = "lost"  # its worker vanished; it is resumed as a new attempt

    def is_finished(self) -> bool:
        """Whether the state is terminal (no transition leaves it)."""
        return self in _FINISHED


_FINISHED = frozenset(
    {TrialState.COMPLETED, TrialState.STOPPED, TrialState.DIVERGED, TrialState.FAILED}
)


class StageState(enum.StrEnum):
    """A stage waits, runs, then is done once all its trials finished."""

    WAITING = "waiting"
    RUNNING = "running"
    DONE = "done"


class StudyState(enum.StrEnum):
    """A study runs its stages in order and then completes; it may be paused (no new
    trials, running ones finish) or stopped (running trials are told to stop)."""

    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    STOPPED = "stopped"

    def is_finished(self) -> bool:
        """Whether the study is over (it will never hand out trials again)."""
        return self in (StudyState.COMPLETED, StudyState.STOPPED)


class JobState(enum.StrEnum):
    """A job the master runs on a worker (an ensemble build): queued until a
    worker slot is free, then running; done or failed never change again."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"

    def is_finished(self) -> bool:
        """Whether the job is over (done or failed)."""
        return self in (JobState.DONE, JobState.FAILED)
