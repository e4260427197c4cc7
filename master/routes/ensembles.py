"""Ensembles of a finished study, evaluated on the test split selection never saw.

Building them trains and predicts with K models: a job on a worker
(master/ensemble_jobs.py). The POST answers at once with the job; its URL tells how it
goes, and once it is done `GET .../ensembles` is its report.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response, status

from gridless.common.bounds import Id, Offset
from gridless.common.db import EnsembleJobRow, EnsembleRow
from gridless.master.deps import ServiceDep, StudyDep
from gridless.master.ensemble_jobs import EnsembleJobs, job_url
from gridless.master.schemas import (
    EnsembleBuild,
    EnsembleJobPublic,
    EnsembleJobsPublic,
    EnsemblesPublic,
)

router = APIRouter(prefix="/studies", tags=["ensembles"])


def get_jobs(request: Request) -> EnsembleJobs:
    jobs: EnsembleJobs = request.app.state.ensemble_jobs
    return jobs


JobsDep = Annotated[EnsembleJobs, Depends(get_jobs)]


def _public(study_id: int, row: EnsembleRow) -> EnsemblesPublic:
    report = dict(row.report)
    # a report stored before named metrics has accuracies only
    report["rows"] = [
        {"val_score": r.get("val_accuracy"), "test_score": r.get("test_accuracy"), **r}
        for r in report["rows"]
    ]
    return EnsemblesPublic(study_id=study_id, created_at=row.created_at, **report)


def _job_public(job: EnsembleJobRow, report: EnsembleRow | None = None) -> EnsembleJobPublic:
    return EnsembleJobPublic(
        id=job.id,
        study_id=job.study_id,
        state=job.state,
        url=job_url(job.study_id, job.id),
        options=job.options,
        error=job.error,
        host=job.host,
        pid=job.pid,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        report=_public(job.study_id, report) if report is not None else None,
    )


@router.post("/{study_id}/ensembles", status_code=status.HTTP_202_ACCEPTED)
def build_ensembles(
    study: StudyDep,
    jobs: JobsDep,
    response: Response,
    body: Annotated[EnsembleBuild | None, Body()] = None,
) -> EnsembleJobPublic:
    """Start a job that builds every ensemble kind (top-K, K seeds, K epochs, running
    average) on a worker and evaluates each, and every member, on the held-out test
    split; poll the job's `url`. A `train:` study's models are ensembled through its
    `predict:` and `evaluate:` hooks (top-K and epochs)."""
    job = jobs.submit(study, body or EnsembleBuild())
    response.headers["Location"] = job_url(study.id, job.id)
    return _job_public(job)


@router.get("/{study_id}/ensembles/jobs")
def read_ensemble_jobs(
    study: StudyDep,
    jobs: JobsDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[Offset, Query()] = 0,
) -> EnsembleJobsPublic:
    """The ensemble jobs of a study, newest first."""
    rows, count = jobs.study_jobs(study.id, limit=limit, offset=offset)
    return EnsembleJobsPublic(data=[_job_public(job) for job in rows], count=count)


@router.get("/{study_id}/ensembles/jobs/{job_id}")
def read_ensemble_job(
    study: StudyDep, jobs: JobsDep, job_id: Annotated[Id, Path()]
) -> EnsembleJobPublic:
    """One ensemble job: queued, running, done (with its report) or failed (with why)."""
    return _job_public(*jobs.get(study.id, job_id))


@router.get("/{study_id}/ensembles")
def read_ensembles(study: StudyDep, service: ServiceDep) -> EnsemblesPublic:
    """The latest ensemble report of a study."""
    return _public(study.id, service.latest_ensembles(study.id))
