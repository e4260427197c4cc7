"""Sanity checks before learning (the seed's "Before learning: sanity checks").

1. The data loss at chance, with small parameters and regularization off: ln C for
   softmax, C - 1 for the Weston-Watkins SVM; for regression (`mse`) the variance of the
   targets, what predicting their mean costs.
2. Raising the regularization strength raises the loss.
3. A 20-example subset overfits: 100 % training accuracy and a near-zero loss with
   regularization off; for regression, which has no accuracy, a near-zero loss alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from gridless.worker.data import Dataset
from gridless.worker.diagnostics.gradcheck import CheckTarget
from gridless.worker.training import Trainer, chance_loss

__all__ = [
    "CHANCE_CHECK",
    "OVERFIT_CHECK",
    "REG_CHECK",
    "SanityResult",
    "chance_loss",
    "chance_loss_check",
    "overfit_check",
    "reg_check",
]

# The checks' names, as reports show them.
CHANCE_CHECK = "initial loss at chance"
REG_CHECK = "raising regularization raises the loss"
OVERFIT_CHECK = "overfits 20 examples"

OVERFIT_EXAMPLES = 20
OVERFIT_LOSS = 0.05  # "near-zero"
# For regression on standardized targets (variance 1): 1 % of what predicting the mean
# costs (0.05 is 2 % of ln 10, the chance loss of softmax on digits).
OVERFIT_REGRESSION_LOSS = 0.01
REGRESSION_GOAL = f"below {OVERFIT_REGRESSION_LOSS} on standardized targets (variance 1)"


@dataclass(frozen=True)
class SanityResult:
    """One check: passed or not, and the numbers behind it."""

    name: str
    passed: bool
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"check": self.name, "passed": self.passed, "detail": self.detail}


def chance_loss_check(
    target: CheckTarget,
    *,
    num_classes: int,
    loss: str,
    targets: np.ndarray | None = None,
    tolerance: float = 0.02,
) -> SanityResult:
    """The data loss with the output layer scaled down (small parameters), reg off.

    For `mse` the output bias is also set to the mean of `targets` (the check examples'
    targets, (N, k)), so the net predicts that mean and should cost their variance.
    """
    expected = chance_loss(num_classes, loss, targets=targets)
    weights = target.params[target.output_weight]
    bias = target.params[target.output_bias]
    saved, saved_bias = weights.copy(), bias.copy()
    weights *= 1e-3
    if loss == "mse" and targets is not None:  # chance_loss refused None for mse
        bias[...] = np.asarray(targets, dtype=np.float64).reshape(len(targets), -1).mean(axis=0)
    try:
        value, _ = target.loss(data=True, reg=False)
    finally:
        weights[...] = saved
        bias[...] = saved_bias
    ok = math.isfinite(value) and abs(value - expected) <= tolerance * expected
    if loss == "mse":
        what = f"the targets' variance: predicting their mean, k={bias.size}"
    else:
        what = f"{'ln C' if loss != 'svm' else 'C - 1'} for C={num_classes}"
    return SanityResult(
        CHANCE_CHECK,
        ok,
        f"data loss {value:.4f} with small parameters, expected {expected:.4f} ({what})",
    )


def reg_check(target: CheckTarget) -> SanityResult:
    """The total loss must grow when the regularization strength grows."""
    saved = target.reg
    values = []
    try:
        for strength in (0.0, 1e-2, 1.0):
            target.reg = strength
            values.append(target.loss(data=True, reg=True)[0])
    finally:
        target.reg = saved
    ok = values[0] < values[1] < values[2]
    return SanityResult(
        REG_CHECK,
        ok,
        "loss " + " < ".join(f"{v:.4f}" for v in values) + " for reg 0, 1e-2, 1",
    )


def tiny_subset(data: Dataset, size: int = OVERFIT_EXAMPLES) -> Dataset:
    """The first `size` training examples as train and validation split alike.

    Regression targets are standardized per output (variance 1), so that the check's
    fixed optimizer settings neither diverge nor crawl whatever the targets' scale.
    """
    x, y = data.x_train[:size], data.y_train[:size]
    if data.is_regression:
        std = y.std(axis=0)
        y = (y - y.mean(axis=0)) / np.where(std > 0, std, 1.0)
    return Dataset(f"{data.name}[:{size}]", x, y, x, y, x, y, data.num_classes, data.image_shape)


def overfit_check(
    factory: Callable[[Dataset, Mapping[str, Any], int], Trainer],
    data: Dataset,
    params: Mapping[str, Any],
    *,
    max_epochs: int = 300,
) -> SanityResult:
    """Train on 20 examples (reg off) until 100 % training accuracy and loss < 0.05; for
    regression, which has no accuracy, until the loss on the standardized targets is
    below 0.01."""
    trainer = factory(tiny_subset(data), params, 0)
    regression = data.is_regression
    last, epoch = None, 0
    for epoch in range(1, max_epochs + 1):
        last = trainer.train_epoch()
        if last.diverged:
            break
        if regression and last.train_loss < OVERFIT_REGRESSION_LOSS:
            return SanityResult(
                OVERFIT_CHECK,
                True,
                f"loss {last.train_loss:.4f} after {epoch} epochs, {REGRESSION_GOAL}",
            )
        if not regression and last.train_accuracy == 1.0 and last.train_loss < OVERFIT_LOSS:
            return SanityResult(
                OVERFIT_CHECK,
                True,
                f"100% training accuracy and loss {last.train_loss:.4f} after {epoch} epochs",
            )
    if last is None:
        return SanityResult(OVERFIT_CHECK, False, "no epoch ran")
    if regression:
        detail = f"loss {last.train_loss:.4f}, not {REGRESSION_GOAL}"
    else:
        accuracy = "none" if last.train_accuracy is None else f"{last.train_accuracy:.2%}"
        detail = f"training accuracy {accuracy}, loss {last.train_loss:.4f}"
    diverged = " (diverged)" if last.diverged else ""
    return SanityResult(OVERFIT_CHECK, False, f"after {epoch} epochs: {detail}{diverged}")
