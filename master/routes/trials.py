"""Trials: details, metrics and checkpoints for people; start/report/finish for workers."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse

from gridless.common.bounds import Offset
from gridless.common.checkpoints import trial_folder
from gridless.common.db import TrialRow
from gridless.common.errors import NotFoundError
from gridless.common.protocol import EpochReport, FinishRequest, ReportAck, StartRequest
from gridless.master.deps import ProtocolDep, ServiceDep, TrialDep
from gridless.master.schemas import (
    CheckpointPublic,
    EpochMetricPublic,
    TrialDetailPublic,
    TrialPublic,
)
from gridless.master.services import StudyService

router = APIRouter(prefix="/trials", tags=["trials"])


def trial_detail(trial: TrialRow, service: StudyService) -> TrialDetailPublic:
    """A trial with its per-epoch metrics and live checkpoints."""
    item = TrialPublic.model_validate(trial)
    item.stage = service.stage_index(trial.study_id).get(trial.stage_id)
    return TrialDetailPublic(
        **item.model_dump(),
        metrics=[EpochMetricPublic.model_validate(m) for m in service.trial_metrics(trial.id)],
        checkpoints=[
            CheckpointPublic.model_validate(c) for c in service.trial_checkpoints(trial.id)
        ],
    )


def trial_log(trial: TrialRow, service: StudyService, request: Request) -> str:
    """What the trial printed, every attempt."""
    study = service.get_study(trial.study_id)
    try:
        data: bytes = request.app.state.store.read_log(study.name, trial_folder(trial.number))
    except NotFoundError:
        raise NotFoundError(f"trial {trial.number} has no log: it printed nothing") from None
    return data.decode("utf-8", "replace")


@router.get("/{trial_id}")
def read_trial(trial: TrialDep, service: ServiceDep) -> TrialDetailPublic:
    """One trial by its id, with its per-epoch metrics and live checkpoints."""
    return trial_detail(trial, service)


@router.get("/{trial_id}/metrics")
def list_metrics(
    trial: TrialDep,
    service: ServiceDep,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    offset: Annotated[Offset, Query()] = 0,
) -> list[EpochMetricPublic]:
    """Per-epoch metrics and babysitting statistics, oldest first."""
    rows = service.trial_metrics(trial.id, limit=limit, offset=offset)
    return [EpochMetricPublic.model_validate(m) for m in rows]


@router.get("/{trial_id}/checkpoints")
def list_checkpoints(
    trial: TrialDep, service: ServiceDep, include_deleted: bool = False
) -> list[CheckpointPublic]:
    """Recorded checkpoints; with include_deleted, also those retention removed (and why)."""
    rows = service.trial_checkpoints(trial.id, include_deleted=include_deleted)
    return [CheckpointPublic.model_validate(c) for c in rows]


@router.get("/{trial_id}/log", response_class=PlainTextResponse)
def read_log(trial: TrialDep, service: ServiceDep, request: Request) -> str:
    """What the trial's code printed (stdout and stderr, every attempt), as plain text."""
    return trial_log(trial, service, request)


@router.post("/{trial_id}/start")
def start_trial(trial: TrialDep, body: StartRequest, protocol: ProtocolDep) -> ReportAck:
    """A worker registers the parameters it sampled; repeats are no-ops."""
    return protocol.start_trial(trial.id, body)


@router.post("/{trial_id}/reports")
def create_report(trial: TrialDep, body: EpochReport, protocol: ProtocolDep) -> ReportAck:
    """Store one epoch's metrics; idempotent on (trial, attempt, epoch); 409 once finished."""
    return protocol.record_report(trial.id, body)


@router.post("/{trial_id}/finish")
def finish_trial(trial: TrialDep, body: FinishRequest, protocol: ProtocolDep) -> ReportAck:
    """A worker ends its trial (completed, diverged, failed or stopped)."""
    return protocol.finish_trial(trial.id, body)
