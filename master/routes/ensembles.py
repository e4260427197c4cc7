"""Ensembles of a finished study, evaluated on the test split selection never saw.

The evaluation is worker code (worker/ensembles.py) that the master runs in-process,
like the preflight checks of the CLI: it reads the store, trains a few small models and
predicts; it never changes a trial.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request, status

from gridless.common.db import EnsembleRow
from gridless.master.deps import ServiceDep, StudyDep
from gridless.master.schemas import EnsembleBuild, EnsemblesPublic

router = APIRouter(prefix="/studies", tags=["ensembles"])


def _public(study_id: int, row: EnsembleRow) -> EnsemblesPublic:
    report = dict(row.report)
    # a report stored before issue 16 has accuracies only
    report["rows"] = [
        {"val_score": r.get("val_accuracy"), "test_score": r.get("test_accuracy"), **r}
        for r in report["rows"]
    ]
    return EnsemblesPublic(study_id=study_id, created_at=row.created_at, **report)


@router.post("/{study_id}/ensembles", status_code=status.HTTP_201_CREATED)
def build_ensembles(
    study: StudyDep,
    service: ServiceDep,
    request: Request,
    body: Annotated[EnsembleBuild | None, Body()] = None,
) -> EnsemblesPublic:
    """Build every ensemble kind (top-K, K seeds, K epochs, running average) and evaluate
    each, and every member, on the held-out test split. A `train:` study's models are
    ensembled through its `predict:` and `evaluate:` hooks (top-K and epochs)."""
    from gridless.common.errors import SpecError
    from gridless.worker.ensembles import TopTrial, evaluate_ensembles

    options = body or EnsembleBuild()
    spec = study.spec
    hooks = None
    if spec.get("train"):
        hooks = _user_hooks(study.id, spec, options)  # before any work: a 422 names them
    row, chosen = service.ensemble_inputs(study.id, options.k)
    store = request.app.state.store
    top = [TopTrial(t.number, t.params or {}, store.fetch(path), t.epochs) for t, path in chosen]
    try:
        if hooks is not None:
            from gridless.worker.ensembles import evaluate_user_ensembles

            kept = service.trial_checkpoints(chosen[0][0].id) if chosen else []
            report = evaluate_user_ensembles(
                predict=hooks[0],
                evaluate=hooks[1],
                metric=row.objective,
                top=[
                    TopTrial(
                        t.number, {**spec.get("fixed", {}), **t.params}, t.checkpoint, t.epochs
                    )
                    for t in top
                ],
                epoch_checkpoints=[(ck.epoch, store.fetch(ck.path)) for ck in kept],
                k=options.k,
            )
        else:
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


def _user_hooks(
    study_id: int, spec: dict[str, Any], options: EnsembleBuild
) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """The study's predict and evaluate functions (the request's, else the spec's),
    imported on the master.

    Raises:
        SpecError: when the study names none, or they do not import.
    """
    from gridless.common.errors import SpecError
    from gridless.worker.function_runner import load_train_function

    predict = options.predict or spec.get("predict")
    evaluate = options.evaluate or spec.get("evaluate")
    if predict is None or evaluate is None:
        raise SpecError(
            f"study {study_id} trains {spec['train']!r}, a function of yours: to ensemble its "
            "models, give predict(state, params, split) and evaluate(outputs, split) "
            "(spec keys predict: and evaluate:, or this request's predict and evaluate; "
            "docs/user-code.md#ensembles)"
        )
    try:
        return (
            load_train_function(predict, role="predict"),
            load_train_function(evaluate, role="evaluate"),
        )
    except ValueError as exc:
        raise SpecError(f"{exc} (on the master, which runs the ensembles)") from None


@router.get("/{study_id}/ensembles")
def read_ensembles(study: StudyDep, service: ServiceDep) -> EnsemblesPublic:
    """The latest ensemble report of a study."""
    return _public(study.id, service.latest_ensembles(study.id))
