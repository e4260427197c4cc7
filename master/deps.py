"""FastAPI dependencies: the services, and load-or-404 lookups."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from gridless.common.bounds import Id, Number
from gridless.common.db import StudyRow, TrialRow
from gridless.master.protocol import TrialProtocol
from gridless.master.services import StudyService
from gridless.master.worker_manager import WorkerManager

__all__ = ["ProtocolDep", "ServiceDep", "StudyDep", "TrialDep", "WorkersDep"]


def get_service(request: Request) -> StudyService:
    service: StudyService = request.app.state.service
    return service


def get_protocol(request: Request) -> TrialProtocol:
    protocol: TrialProtocol = request.app.state.protocol
    return protocol


def get_workers(request: Request) -> WorkerManager:
    workers: WorkerManager = request.app.state.workers
    return workers


ServiceDep = Annotated[StudyService, Depends(get_service)]
ProtocolDep = Annotated[TrialProtocol, Depends(get_protocol)]
WorkersDep = Annotated[WorkerManager, Depends(get_workers)]


def load_study(service: ServiceDep, study_id: Annotated[Id, Path()]) -> StudyRow:
    """The study of the path, or 404 (raised by the service as NotFoundError)."""
    return service.get_study(study_id)


def load_trial(service: ServiceDep, trial_id: Annotated[Id, Path()]) -> TrialRow:
    """The trial of the path, or 404."""
    return service.get_trial(trial_id)


def load_study_trial(
    service: ServiceDep,
    study_id: Annotated[Id, Path()],
    number: Annotated[Number, Path(description="the trial's number within its study")],
) -> TrialRow:
    """The trial of the path by its number in its study, or 404."""
    return service.get_study_trial(study_id, number)


StudyDep = Annotated[StudyRow, Depends(load_study)]
TrialDep = Annotated[TrialRow, Depends(load_trial)]
StudyTrialDep = Annotated[TrialRow, Depends(load_study_trial)]
