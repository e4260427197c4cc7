"""Studies: list, read (with stages, progress and border flags), ranked trials."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from common.states import TrialState
from master.deps import ServiceDep, StudyDep
from master.schemas import (
    StagePublic,
    StudiesPublic,
    StudyDetailPublic,
    StudyPublic,
    TrialPublic,
    TrialsPublic,
)

router = APIRouter(prefix="/studies", tags=["studies"])

Limit = Annotated[int, Query(ge=1, le=1000, description="page size")]
Offset = Annotated[int, Query(ge=0, le=10**9)]


@router.get("")
def list_studies(service: ServiceDep, limit: Limit = 100, offset: Offset = 0) -> StudiesPublic:
    """List studies, oldest first."""
    rows, count = service.list_studies(limit=limit, offset=offset)
    return StudiesPublic(data=[StudyPublic.model_validate(r) for r in rows], count=count)


@router.get("/{study_id}")
def read_study(study: StudyDep, service: ServiceDep) -> StudyDetailPublic:
    """One study with its stages, progress, best score and border flags."""
    stages = service.stages(study.id)
    progress = service.progress(study.id)
    flags: list[dict[str, Any]] = []
    for stage in stages:
        flags.extend({**f, "stage": stage.index} for f in stage.decisions.get("flags", []))
    return StudyDetailPublic(
        **StudyPublic.model_validate(study).model_dump(),
        stages=[StagePublic.model_validate(s) for s in stages],
        finished_trials=progress.finished,
        total_trials=progress.total,
        best_score=progress.best,
        border_flags=flags,
        warning_counts=service.warning_counts(study.id),
    )


@router.get("/{study_id}/stages")
def list_stages(study: StudyDep, service: ServiceDep) -> list[StagePublic]:
    """The stages of a study with their ranges and narrowing decisions."""
    return [StagePublic.model_validate(s) for s in service.stages(study.id)]


@router.get("/{study_id}/trials")
def list_trials(
    study: StudyDep,
    service: ServiceDep,
    limit: Limit = 50,
    offset: Offset = 0,
    state: TrialState | None = None,
) -> TrialsPublic:
    """A page of the study's trials ranked by its metric, best first (ties by trial number)."""
    rows, count = service.ranked_trials(
        study.id, limit=limit, offset=offset, state=state.value if state else None
    )
    data = []
    for i, row in enumerate(rows):
        item = TrialPublic.model_validate(row)
        if row.best_score is not None and state is None:
            item.rank = offset + i + 1
        data.append(item)
    return TrialsPublic(data=data, count=count)
