"""Trainers: turn one trial's hyperparameters into epochs of training and metrics.

A trainer follows a small protocol (`Trainer`): `train_epoch()`, `evaluate()`,
`state_arrays()` and `load_state_arrays()`. The worker loop drives it and never
needs to know which library trains the model.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from worker.data import Dataset, load_dataset
from worker.models import FullyConnectedNet
from worker.optim import get_update_rule

__all__ = [
    "MODELS",
    "EpochMetrics",
    "NumpyMLPTrainer",
    "Trainer",
    "check_params",
    "make_trainer",
]

# A loss this many times above the first one is treated as divergence.
EXPLODE_FACTOR = 100.0


@dataclass(frozen=True)
class EpochMetrics:
    """What one epoch reports; `diverged` is set for a non-finite or exploding loss."""

    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    seconds: float
    diverged: bool


class Trainer(Protocol):
    """What the worker loop needs from a trainer."""

    def train_epoch(self) -> EpochMetrics: ...

    def state_arrays(self) -> dict[str, np.ndarray]: ...

    def load_state_arrays(self, arrays: Mapping[str, np.ndarray]) -> None: ...


NUMPY_MLP_DEFAULTS: dict[str, Any] = {
    "learning_rate": 1e-2,
    "reg": 1e-4,
    "hidden": 100,
    "layers": 1,
    "momentum": 0.9,
    "batch_size": 64,
    "update": "momentum",
}


def _accuracy(model: FullyConnectedNet, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(model.predict(x) == y))


class NumpyMLPTrainer:
    """Minibatch training of `FullyConnectedNet` with an update rule from the registry."""

    def __init__(self, data: Dataset, params: Mapping[str, Any], *, seed: int) -> None:
        self.hp = {**NUMPY_MLP_DEFAULTS, **params}
        self.data = data
        self.rng = np.random.default_rng(seed)
        self.update = get_update_rule(str(self.hp["update"]))
        hidden = [int(self.hp["hidden"])] * int(self.hp["layers"])
        self.model = FullyConnectedNet(
            data.num_features, hidden, data.num_classes, reg=float(self.hp["reg"]), rng=self.rng
        )
        self.optim_state: dict[str, dict[str, Any]] = {k: {} for k in self.model.params}
        self.first_loss: float | None = None

    def train_epoch(self) -> EpochMetrics:
        """One pass over the training split in shuffled minibatches."""
        start = time.perf_counter()
        x, y = self.data.x_train, self.data.y_train
        batch = max(1, int(self.hp["batch_size"]))
        order = self.rng.permutation(x.shape[0])
        losses = []
        diverged = False
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            for lo in range(0, x.shape[0], batch):
                idx = order[lo : lo + batch]
                loss, grads = self.model.loss(x[idx], y[idx])
                if self.first_loss is None:
                    self.first_loss = loss
                if not math.isfinite(loss) or loss > EXPLODE_FACTOR * max(self.first_loss, 1.0):
                    diverged = True
                    losses.append(loss)
                    break
                losses.append(loss)
                for name, w in self.model.params.items():
                    self.model.params[name] = self.update(
                        w, grads[name], self.optim_state[name], self.hp
                    )
            metrics = self._evaluate(float(np.mean(losses)), diverged)
        return EpochMetrics(**metrics, seconds=time.perf_counter() - start)

    def _evaluate(self, train_loss: float, diverged: bool) -> dict[str, Any]:
        model, d = self.model, self.data
        val_loss, _ = model.loss(d.x_val, d.y_val)
        finite = all(np.isfinite(w).all() for w in model.params.values())
        return {
            "train_loss": train_loss,
            "train_accuracy": _accuracy(model, d.x_train, d.y_train) if finite else 0.0,
            "val_loss": val_loss,
            "val_accuracy": _accuracy(model, d.x_val, d.y_val) if finite else 0.0,
            "diverged": diverged or not finite or not math.isfinite(train_loss),
        }

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Model weights and optimizer state, as plain arrays (no pickle)."""
        arrays = {f"param/{k}": v for k, v in self.model.params.items()}
        for name, state in self.optim_state.items():
            for key, value in state.items():
                arrays[f"optim/{name}/{key}"] = np.asarray(value)
        return arrays

    def load_state_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Restore what `state_arrays` returned."""
        for key, value in arrays.items():
            kind, _, rest = key.partition("/")
            if kind == "param":
                self.model.params[rest] = np.array(value)
            elif kind == "optim":
                name, _, field = rest.partition("/")
                self.optim_state[name][field] = np.array(value)


TrainerFactory = Callable[[Dataset, Mapping[str, Any], int], Trainer]

MODELS: dict[str, tuple[TrainerFactory, frozenset[str]]] = {
    "numpy.mlp": (
        lambda data, params, seed: NumpyMLPTrainer(data, params, seed=seed),
        frozenset(NUMPY_MLP_DEFAULTS),
    ),
}


def check_params(model: str, names: set[str]) -> None:
    """Refuse a model name or hyperparameter names the model does not know.

    Raises:
        ValueError: listing the valid names.
    """
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; valid: {', '.join(sorted(MODELS))}")
    known = MODELS[model][1]
    unknown = sorted(names - known)
    if unknown:
        valid = ", ".join(sorted(known))
        raise ValueError(f"model {model!r} has no hyperparameter {unknown[0]!r}; valid: {valid}")


def make_trainer(
    model: str, dataset: str | Mapping[str, str], params: Mapping[str, Any], *, seed: int
) -> Trainer:
    """Build the trainer a study names, on its data set."""
    check_params(model, set(params))
    return MODELS[model][0](load_dataset(dataset), params, seed)
