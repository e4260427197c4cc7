"""What both built-in trainers share (NumPy and Torch): the hyperparameter schema, the
epoch report, the trainer protocol and the loss checks.

Its own module so that `trainer.py` (which picks a trainer) and the two trainers import
it and not each other. Update-rule and schedule names come from their
registries (`optim.UPDATE_NAMES`, `schedules.SCHEDULES`), never listed again.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol, runtime_checkable

import numpy as np

from gridless.common.metric import merged_metrics
from gridless.worker.data import Dataset
from gridless.worker.optim import UPDATE_NAMES
from gridless.worker.schedules import SCHEDULES

__all__ = [
    "CHOICES",
    "CLASSIFICATION_LOSSES",
    "EXPLODE_FACTOR",
    "HYPERPARAMS",
    "EpochMetrics",
    "Trainer",
    "chance_loss",
    "chance_stats",
    "check_loss_fits",
    "diverging",
    "first_layer_snapshot",
    "regression_metrics",
    "resolve_hyperparams",
    "target_variance",
]

# A loss this many times above the first one is treated as divergence (the seed: some
# settings "immediately explode with infinite cost").
EXPLODE_FACTOR = 100.0

# Every hyperparameter a built-in model knows, with its default. The defaults reach
# >= 0.97 validation accuracy on digits with the MLP (tests/worker/test_trainers.py).
HYPERPARAMS: dict[str, Any] = {
    "learning_rate": 0.1,
    "reg": 1e-4,
    "hidden": 100,
    "layers": 1,
    "filters": 16,
    "dropout": 0.0,
    "batchnorm": False,
    "init": "he",
    "loss": "softmax",
    "update": "momentum",
    "momentum": 0.9,
    "momentum_final": None,
    "momentum_epochs": 10,
    "decay_rate": 0.99,
    "beta1": 0.9,
    "beta2": 0.999,
    "eps": 1e-8,
    "batch_size": 64,
    "schedule": "none",
    "lr_decay": 0.5,
    "lr_step": 5,
    "lr_k": 0.1,
    "lr_patience": 2,
    "ema": 0.0,
    "lbfgs_iters": 20,
}

CHOICES: dict[str, tuple[str, ...]] = {
    "update": UPDATE_NAMES,
    "schedule": tuple(SCHEDULES),
    "init": ("he", "xavier", "naive"),
    "loss": ("softmax", "svm", "mse"),
}

# Losses for integer class labels; "mse" is the one for float targets.
CLASSIFICATION_LOSSES = ("softmax", "svm")


@dataclass(frozen=True)
class EpochMetrics:
    """What one epoch reports; `diverged` is set for a non-finite or exploding loss.

    The accuracies are None for regression, whose scores are in `metrics` instead
    (`train_rmse`, `train_r2`, `val_rmse`, `val_r2` from the built-in trainers); a trainer
    may leave `metrics` empty. `stats` carries the babysitting statistics: `loss_history`
    (per iteration), `update_ratio` (per parameter array), `layers` (activation mean/std
    and gradient std per hidden layer), `learning_rate`, and `ema_val_accuracy` (or
    `ema_val_r2`) when EMA weights are kept.
    """

    train_loss: float
    train_accuracy: float | None  # None for regression
    val_loss: float
    val_accuracy: float | None
    seconds: float
    diverged: bool
    stats: dict[str, Any] = field(default_factory=dict)
    # Named metrics beyond the four above (regression: val_rmse, val_r2, ...).
    metrics: dict[str, float] = field(default_factory=dict)

    def named(self) -> dict[str, float]:
        """Every metric of the epoch by name (the accuracies only when set)."""
        return merged_metrics(self, self.metrics)


@runtime_checkable
class Trainer(Protocol):
    """What the worker loop needs from a trainer."""

    checkpoint_suffix: str  # "npz" or "pt"

    def train_epoch(self) -> EpochMetrics: ...

    def write_checkpoint(self, handle: BinaryIO, meta: Mapping[str, Any]) -> None: ...

    def load_checkpoint(self, path: Path) -> dict[str, Any]: ...


def resolve_hyperparams(params: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults overlaid with `params`, validated.

    Raises:
        ValueError: for an unknown choice (listing the valid names) or a value out of range.
    """
    hp = {**HYPERPARAMS, **params}
    for name, valid in CHOICES.items():
        if hp[name] not in valid:
            what = "update rule" if name == "update" else name
            raise ValueError(f"unknown {what} {hp[name]!r}; valid: {', '.join(sorted(valid))}")
    if not 0.0 <= float(hp["dropout"]) < 1.0:
        raise ValueError(f"dropout must be in [0, 1), but got {hp['dropout']!r}")
    for name in ("hidden", "layers", "batch_size", "filters"):
        if int(hp[name]) < 1:
            raise ValueError(f"{name} must be >= 1, but got {hp[name]!r}")
    if float(hp["learning_rate"]) <= 0 or float(hp["reg"]) < 0:
        raise ValueError("learning_rate must be > 0 and reg >= 0")
    return hp


FIRST_LAYER_UNITS = 16
FIRST_LAYER_MAX_PIXELS = 1024


def first_layer_snapshot(
    weights: Any, image_shape: tuple[int, int, int] | None, *, units_first: bool
) -> dict[str, Any] | None:
    """Up to 16 first-layer units (or filters) as images, rounded to 4 decimals, for the
    seed's "First-layer Visualizations"; None for non-image data or large images.

    Args:
        weights: (D, H) for an MLP's first affine layer (`units_first=False`), or
            (H, D) / (F, C, k, k) when units come first.
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim == 4:  # conv filters (F, C, k, k)
        units = w[:FIRST_LAYER_UNITS]
    else:
        if image_shape is None or int(np.prod(image_shape)) > FIRST_LAYER_MAX_PIXELS:
            return None
        rows = w if units_first else w.T
        units = rows[:FIRST_LAYER_UNITS].reshape(-1, *image_shape)
    return {"shape": list(units.shape), "values": np.round(units, 4).ravel().tolist()}


def check_loss_fits(loss: str, data: Dataset) -> None:
    """Refuse a loss that does not fit the data set's targets.

    Raises:
        ValueError: for `mse` on class labels, or a classification loss on float targets.
    """
    if loss == "mse" and not data.is_regression:
        raise ValueError(
            f"loss 'mse' needs float targets (regression), but {data.name} has integer class "
            f"labels ({data.num_classes} classes): use loss softmax or svm, or save 'y' as floats"
        )
    if loss in CLASSIFICATION_LOSSES and data.is_regression:
        raise ValueError(
            f"loss {loss!r} needs integer class labels, but {data.name} has float targets "
            f"(k={data.num_outputs}): use loss mse for regression, or save 'y' as integers"
        )


def target_variance(y: np.ndarray) -> float:
    """What predicting the mean costs in mean squared error: the variance of the targets
    (N, k), averaged over the k outputs."""
    return float(np.mean(np.var(np.asarray(y, dtype=np.float64).reshape(len(y), -1), axis=0)))


def regression_metrics(pred: np.ndarray, y: np.ndarray, split: str) -> dict[str, float]:
    """`{split}_rmse` and `{split}_r2` of predictions against targets, both (N, k).

    RMSE pools every output; R² = 1 - SS_res / SS_tot with SS_tot around each output's
    mean on this split, so R² = 1 - MSE / variance: 0 for predicting the mean, negative
    below that, NaN when the targets are constant.
    """
    residual = float(np.sum((pred - y) ** 2))
    total = float(np.sum((y - y.mean(axis=0)) ** 2))
    r2 = 1.0 - residual / total if total > 0 else float("nan")
    return {f"{split}_rmse": math.sqrt(residual / y.size), f"{split}_r2": r2}


def chance_loss(num_classes: int, loss: str, *, targets: np.ndarray | None = None) -> float:
    """The loss of diffuse scores: -ln(1/C) for softmax, C - 1 for the SVM; for `mse`, the
    variance of `targets` (N, k), the cost of predicting their mean (the seed's "look for
    correct loss at chance performance")."""
    if loss == "mse":
        if targets is None:
            raise ValueError("the chance loss of mse is the targets' variance: pass targets")
        return target_variance(targets)
    return float(num_classes - 1) if loss == "svm" else math.log(num_classes)


def chance_stats(data: Dataset, loss: str) -> dict[str, Any]:
    """What the warnings need to judge the initial loss and "not learning".

    Chance is ln C for softmax and C - 1 for the SVM; for `mse` it is the variance of
    the training targets, what predicting their mean costs (there are no classes).
    """
    if loss == "mse":
        return {"chance_loss": chance_loss(0, loss, targets=data.y_train)}
    return {"num_classes": data.num_classes, "chance_loss": chance_loss(data.num_classes, loss)}


def diverging(loss: float, first: float | None) -> bool:
    """A non-finite loss, or one far above the first loss of the trial."""
    return not math.isfinite(loss) or (
        first is not None and loss > EXPLODE_FACTOR * max(first, 1.0)
    )
