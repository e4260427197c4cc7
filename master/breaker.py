"""The circuit breaker: a study whose trials keep failing pauses with the
reason, instead of burning its budget or ending "completed" with nothing learned.

It trips when the first `first` trials (counted from the last resume) all failed, when
at least `max_rate` of the last `window` finished trials failed, or at once when a
worker reports an environment error (the training code does not import). Failed means
the training code raised; diverged and stopped trials are the search working, not
failing. `POST /studies/{id}/resume` (or `gridless resume`) continues after a fix.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gridless.common.db import StudyRow, TrialRow
from gridless.common.spec import FailureSpec
from gridless.common.states import StudyState, TrialState

__all__ = ["breaker_reason", "trip_if_failing"]


def _first_line(error: str | None) -> str:
    return (error or "no error message").strip().splitlines()[0][:300]


def breaker_reason(
    finished: Sequence[tuple[int, str, str | None]], policy: FailureSpec
) -> str | None:
    """Why the study must pause, given its finished trials since the last resume as
    (number, state, error) in finishing order, or None."""
    failed = TrialState.FAILED.value
    by_number = sorted(finished)
    first = by_number[: policy.first]
    if len(first) == policy.first and all(state == failed for _, state, _ in first):
        return (
            f"the first {policy.first} trials all failed; the last said: "
            f"{_first_line(first[-1][2])}"
        )
    recent = finished[-policy.window :]
    if len(recent) == policy.window:
        errors = [error for _, state, error in recent if state == failed]
        if len(errors) >= policy.max_rate * policy.window:
            return (
                f"{len(errors)} of the last {policy.window} trials failed "
                f"(the limit is {policy.max_rate:.0%}); the last said: {_first_line(errors[-1])}"
            )
    return None


def trip_if_failing(
    s: Session, study: StudyRow, trial: TrialRow, *, environment: bool = False
) -> str | None:
    """Pause `study` after `trial` failed, if the breaker says so; returns the reason."""
    if study.state != StudyState.RUNNING.value:
        return None
    reason: str | None
    if environment:
        reason = (
            f"trial {trial.number} could not load the training code, which fails every "
            f"trial on that worker: {_first_line(trial.error)}"
        )
    else:
        raw: dict[str, Any] = study.spec.get("failures") or {}
        policy = FailureSpec.model_validate(raw)
        rows = s.execute(
            select(TrialRow.number, TrialRow.state, TrialRow.error)
            .where(
                TrialRow.study_id == study.id,
                TrialRow.number >= study.breaker_from,
                TrialRow.state.in_([st.value for st in TrialState if st.is_finished()]),
            )
            .order_by(TrialRow.finished_at, TrialRow.number)
        ).all()
        reason = breaker_reason([(r[0], r[1], r[2]) for r in rows], policy)
    if reason is not None:
        study.state = StudyState.PAUSED.value
        study.state_reason = reason
    return reason
