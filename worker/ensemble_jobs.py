"""The worker's side of an ensemble job: what the master sends, what comes back.

The master chooses the members (by the validation scores it recorded) and sends their
checkpoints' store paths; the worker fetches them from the shared store, imports the
study's hooks where its trials imported their code, builds every ensemble
(worker/ensembles.py) and answers the report. No database, no HTTP: the request and
the answer travel through Ray, like an actor's arguments and return value.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gridless.common.checkpoints import open_store
from gridless.common.errors import GridlessError
from gridless.common.metric import Metric
from gridless.worker.ensembles import (
    EnsembleReport,
    TopTrial,
    evaluate_ensembles,
    evaluate_user_ensembles,
)
from gridless.worker.function_runner import load_train_function

__all__ = ["EnsembleMember", "EnsembleOutcome", "EnsembleRequest", "build_ensembles"]


@dataclass(frozen=True)
class EnsembleMember:
    """One of the top trials, best first: its parameters and its best checkpoint's path
    in the store."""

    number: int
    params: Mapping[str, Any]
    path: str
    epochs: int


@dataclass(frozen=True)
class EnsembleRequest:
    """Everything a worker needs to build one study's ensembles.

    A `train:` study names its `predict` and `evaluate` hooks and the best trial's kept
    checkpoints (top-K and epochs, no retraining); otherwise `model` and `dataset` are
    built in (every kind, retraining the best configuration when `retrain`).
    """

    study_id: int
    metric: Metric
    k: int
    top: tuple[EnsembleMember, ...]
    seed: int = 0
    model: str = "numpy.mlp"
    dataset: str | Mapping[str, str] = "digits"
    fixed: Mapping[str, Any] = field(default_factory=dict)
    retrain: bool = True
    predict: str | None = None
    evaluate: str | None = None
    epoch_checkpoints: tuple[tuple[int, str], ...] = ()  # (epoch, path), oldest first


@dataclass(frozen=True)
class EnsembleOutcome:
    """The report (`EnsembleReport.to_json()`), or why there is none, and where it ran."""

    host: str
    pid: int
    report: dict[str, Any] | None = None
    error: str | None = None


def build_ensembles(
    request: EnsembleRequest, *, store_root: str, device: str = "cpu"
) -> EnsembleOutcome:
    """Build and evaluate a study's ensembles from the shared store.

    A failure the user can act on (a hook that does not import, raises or returns what it
    must not; a checkpoint the store lost) is the outcome's `error`, in the words the
    synchronous route used to answer with; anything else raises.

    Args:
        store_root: the store the study's workers wrote to (a path or an fsspec URL).
        device: where a Torch model retrains (the device Ray gave this worker).
    """
    host, pid = socket.gethostname(), os.getpid()
    try:
        report = _report(request, store_root, device)
    except (ValueError, GridlessError) as exc:  # CodeNotFound is a ValueError
        return EnsembleOutcome(host, pid, error=str(exc))
    return EnsembleOutcome(host, pid, report=report.to_json())


def _report(request: EnsembleRequest, store_root: str, device: str) -> EnsembleReport:
    store = open_store(store_root)
    top = [TopTrial(m.number, m.params, store.fetch(m.path), m.epochs) for m in request.top]
    if request.predict is not None and request.evaluate is not None:
        try:
            predict = load_train_function(request.predict, role="predict")
            evaluate = load_train_function(request.evaluate, role="evaluate")
        except ValueError as exc:
            raise ValueError(f"{exc} (on the worker, which runs the ensembles)") from None
        return evaluate_user_ensembles(
            predict=predict,
            evaluate=evaluate,
            metric=request.metric,
            top=top,
            epoch_checkpoints=[(e, store.fetch(p)) for e, p in request.epoch_checkpoints],
            k=request.k,
        )
    return evaluate_ensembles(
        model=request.model,
        dataset=request.dataset,
        fixed=request.fixed,
        top=top,
        k=request.k,
        seed=request.seed,
        retrain=request.retrain,
        device=device,
    )
