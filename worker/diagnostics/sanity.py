"""Sanity checks before learning (the seed's "Before learning: sanity checks").

1. The data loss at chance, with small parameters and regularization off: ln C for
   softmax, C - 1 for the Weston-Watkins SVM.
2. Raising the regularization strength raises the loss.
3. A 20-example subset overfits: 100 % training accuracy and a near-zero loss with
   regularization off.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gridless.worker.data import Dataset
from gridless.worker.diagnostics.gradcheck import CheckTarget
from gridless.worker.trainer import Trainer

__all__ = ["SanityResult", "chance_loss", "chance_loss_check", "overfit_check", "reg_check"]

OVERFIT_EXAMPLES = 20
OVERFIT_LOSS = 0.05  # "near-zero"


@dataclass(frozen=True)
class SanityResult:
    """One check: passed or not, and the numbers behind it."""

    name: str
    passed: bool
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"check": self.name, "passed": self.passed, "detail": self.detail}


def chance_loss(num_classes: int, loss: str) -> float:
    """The loss of diffuse scores: -ln(1/C) for softmax, C - 1 for the SVM."""
    return float(num_classes - 1) if loss == "svm" else math.log(num_classes)


def chance_loss_check(
    target: CheckTarget, *, num_classes: int, loss: str, tolerance: float = 0.02
) -> SanityResult:
    """The data loss with the output layer scaled down (small parameters), reg off."""
    expected = chance_loss(num_classes, loss)
    weights = target.params[target.output_weight]
    saved = weights.copy()
    weights *= 1e-3
    try:
        value, _ = target.loss(data=True, reg=False)
    finally:
        weights[...] = saved
    ok = math.isfinite(value) and abs(value - expected) <= tolerance * expected
    return SanityResult(
        "initial loss at chance",
        ok,
        f"data loss {value:.4f} with small parameters, expected {expected:.4f} "
        f"({'ln C' if loss != 'svm' else 'C - 1'} for C={num_classes})",
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
        "raising regularization raises the loss",
        ok,
        "loss " + " < ".join(f"{v:.4f}" for v in values) + " for reg 0, 1e-2, 1",
    )


def tiny_subset(data: Dataset, size: int = OVERFIT_EXAMPLES) -> Dataset:
    """The first `size` training examples as train and validation split alike."""
    x, y = data.x_train[:size], data.y_train[:size]
    return Dataset(f"{data.name}[:{size}]", x, y, x, y, x, y, data.num_classes, data.image_shape)


def overfit_check(
    factory: Callable[[Dataset, Mapping[str, Any], int], Trainer],
    data: Dataset,
    params: Mapping[str, Any],
    *,
    max_epochs: int = 300,
) -> SanityResult:
    """Train on 20 examples (reg off) until 100 % training accuracy and loss < 0.05."""
    trainer = factory(tiny_subset(data), params, 0)
    last = None
    for epoch in range(1, max_epochs + 1):
        last = trainer.train_epoch()
        if last.diverged:
            break
        if last.train_accuracy == 1.0 and last.train_loss < OVERFIT_LOSS:
            return SanityResult(
                "overfits 20 examples",
                True,
                f"100% training accuracy and loss {last.train_loss:.4f} after {epoch} epochs",
            )
    detail = (
        "no epoch ran"
        if last is None
        else (
            f"after {max_epochs} epochs: training accuracy {last.train_accuracy:.2%}, "
            f"loss {last.train_loss:.4f}" + (" (diverged)" if last.diverged else "")
        )
    )
    return SanityResult("overfits 20 examples", False, detail)
