"""Trials: details for people, and the start/report/finish calls of workers."""

from __future__ import annotations

from fastapi import APIRouter

from common.protocol import EpochReport, FinishRequest, ReportAck, StartRequest
from master.deps import ServiceDep, TrialDep
from master.schemas import (
    CheckpointPublic,
    EpochMetricPublic,
    TrialDetailPublic,
    TrialPublic,
)

router = APIRouter(prefix="/trials", tags=["trials"])


@router.get("/{trial_id}")
def read_trial(trial: TrialDep, service: ServiceDep) -> TrialDetailPublic:
    """One trial with its per-epoch metrics and recorded checkpoints."""
    return TrialDetailPublic(
        **TrialPublic.model_validate(trial).model_dump(),
        metrics=[EpochMetricPublic.model_validate(m) for m in service.trial_metrics(trial.id)],
        checkpoints=[
            CheckpointPublic.model_validate(c) for c in service.trial_checkpoints(trial.id)
        ],
    )


@router.post("/{trial_id}/start")
def start_trial(trial: TrialDep, body: StartRequest, service: ServiceDep) -> ReportAck:
    """A worker registers the parameters it sampled; repeats are no-ops."""
    return service.start_trial(trial.id, body)


@router.post("/{trial_id}/reports")
def create_report(trial: TrialDep, body: EpochReport, service: ServiceDep) -> ReportAck:
    """Store one epoch's metrics; idempotent on (trial, attempt, epoch); 409 once finished."""
    return service.record_report(trial.id, body)


@router.post("/{trial_id}/finish")
def finish_trial(trial: TrialDep, body: FinishRequest, service: ServiceDep) -> ReportAck:
    """A worker ends its trial (completed, diverged or failed)."""
    return service.finish_trial(trial.id, body)
