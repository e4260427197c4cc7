"""Ensembles of a finished study, evaluated on the test split selection never saw.

The evaluation is worker code (worker/ensembles.py) that the master runs in-process,
like the preflight checks of the CLI: it reads the store, trains a few small models and
predicts; it never changes a trial.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Request, status

from gridless.common.db import EnsembleRow
from gridless.master.deps import ServiceDep, StudyDep
from gridless.master.schemas import EnsembleBuild, EnsemblesPublic

router = APIRouter(prefix="/studies", tags=["ensembles"])


def _public(study_id: int, row: EnsembleRow) -> EnsemblesPublic:
    return EnsemblesPublic(study_id=study_id, created_at=row.created_at, **row.report)


@router.post("/{study_id}/ensembles", status_code=status.HTTP_201_CREATED)
def build_ensembles(
    study: StudyDep,
    service: ServiceDep,
    request: Request,
    body: Annotated[EnsembleBuild | None, Body()] = None,
) -> EnsemblesPublic:
    """Build every ensemble kind (top-K, K seeds, K epochs, running average) and evaluate
    each, and every member, on the held-out test split."""
    from gridless.common.errors import SpecError
    from gridless.worker.ensembles import TopTrial, evaluate_ensembles

    options = body or EnsembleBuild()
    if study.spec.get("train"):
        raise SpecError(
            f"study {study.id} trains {study.spec['train']!r}, a function of yours: gridless "
            "cannot rebuild its model to ensemble it yet (ensembles of built-in models only)"
        )
    row, chosen = service.ensemble_inputs(study.id, options.k)
    store = request.app.state.store
    top = [TopTrial(t.number, t.params or {}, store.fetch(path), t.epochs) for t, path in chosen]
    spec = row.spec
    try:
        report = evaluate_ensembles(
            model=spec["model"],
            dataset=spec["dataset"],
            fixed=spec.get("fixed", {}),
            top=top,
            k=options.k,
            seed=row.seed,
            retrain=options.retrain,
        )
    except ValueError as exc:
        raise SpecError(str(exc)) from None
    return _public(study.id, service.save_ensembles(study.id, report.to_json()))


@router.get("/{study_id}/ensembles")
def read_ensembles(study: StudyDep, service: ServiceDep) -> EnsemblesPublic:
    """The latest ensemble report of a study."""
    return _public(study.id, service.latest_ensembles(study.id))
