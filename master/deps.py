"""FastAPI dependencies: the service, and load-or-404 lookups."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from common.db import StudyRow, TrialRow
from master.services import StudyService

__all__ = ["ServiceDep", "StudyDep", "TrialDep"]


def get_service(request: Request) -> StudyService:
    service: StudyService = request.app.state.service
    return service


ServiceDep = Annotated[StudyService, Depends(get_service)]


def load_study(service: ServiceDep, study_id: Annotated[int, Path(ge=1, le=2**62)]) -> StudyRow:
    """The study of the path, or 404 (raised by the service as NotFoundError)."""
    return service.get_study(study_id)


def load_trial(service: ServiceDep, trial_id: Annotated[int, Path(ge=1, le=2**62)]) -> TrialRow:
    """The trial of the path, or 404."""
    return service.get_trial(trial_id)


StudyDep = Annotated[StudyRow, Depends(load_study)]
TrialDep = Annotated[TrialRow, Depends(load_trial)]
