"""Trials: details, metrics and checkpoints for people; start/report/finish for workers."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import PlainTextResponse

from gridless.common.bounds import Id, Offset
from gridless.common.checkpoints import trial_folder
from gridless.common.db import TrialRow
from gridless.common.errors import NotFoundError
from gridless.common.messages import (
    BatchAck,
    EpochReport,
    FinishRequest,
    ReportAck,
    ReportBatch,
    StartRequest,
)
from gridless.master.deps import ServiceDep, TrialDep
from gridless.master.protocol import TrialProtocol
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


# The worker calls are async: the event loop parses and validates, the master's single
# writer commits (many requests to a transaction), and no thread waits on a lock.


def _protocol(request: Request) -> TrialProtocol:
    protocol: TrialProtocol = request.app.state.protocol
    return protocol


@router.post("/{trial_id}/start")
async def start_trial(
    trial_id: Annotated[Id, Path()], body: StartRequest, request: Request
) -> ReportAck:
    """A worker registers the parameters it sampled; repeats are no-ops."""
    protocol = _protocol(request)
    return await protocol.writer.run_async(protocol.start_job(trial_id, body))


@router.post("/{trial_id}/reports")
async def create_report(
    trial_id: Annotated[Id, Path()], body: EpochReport, request: Request
) -> ReportAck:
    """Store one epoch's metrics; idempotent on (trial, attempt, epoch); 409 once finished."""
    protocol = _protocol(request)
    return await protocol.writer.run_async(protocol.report_job(trial_id, body))


@router.post("/{trial_id}/reports/batch")
async def create_reports(
    trial_id: Annotated[Id, Path()], body: ReportBatch, request: Request
) -> BatchAck:
    """Store several epochs of one trial in order, all or none, idempotent per epoch as
    one report is; `stop` is set once the trial must end (later epochs are not stored)."""
    protocol = _protocol(request)
    acks = await protocol.writer.run_async(protocol.reports_job(trial_id, body.reports))
    return BatchAck(acks=acks, stop=any(a.stop for a in acks))


@router.post("/{trial_id}/finish")
async def finish_trial(
    trial_id: Annotated[Id, Path()], body: FinishRequest, request: Request
) -> ReportAck:
    """A worker ends its trial (completed, diverged, failed or stopped)."""
    protocol = _protocol(request)
    return await protocol.writer.run_async(protocol.finish_job(trial_id, body))
