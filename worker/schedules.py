"""Learning-rate schedules (the seed's "Annealing the learning rate"), as pure functions.

`learning_rate_at(hp, epoch, plateau_drops)` gives the rate for a 0-based epoch; the
plateau schedule needs the count of drops so far, kept by `PlateauTracker`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "SCHEDULES",
    "PlateauTracker",
    "exponential",
    "inverse_time",
    "learning_rate_at",
    "step_decay",
]


def step_decay(lr0: float, epoch: int, *, factor: float = 0.5, every: int = 5) -> float:
    """Reduce by `factor` every `every` epochs (the seed: "by a half every 5 epochs")."""
    return lr0 * factor ** (epoch // max(1, every))


def exponential(lr0: float, epoch: int, *, k: float = 0.1) -> float:
    """alpha = alpha_0 * exp(-k t), t in epochs."""
    return lr0 * math.exp(-k * epoch)


def inverse_time(lr0: float, epoch: int, *, k: float = 0.1) -> float:
    """alpha = alpha_0 / (1 + k t), t in epochs."""
    return lr0 / (1.0 + k * epoch)


Schedule = Callable[[float, int, Mapping[str, Any], int], float]

SCHEDULES: dict[str, Schedule] = {
    "none": lambda lr0, epoch, hp, drops: lr0,
    "step": lambda lr0, epoch, hp, drops: step_decay(
        lr0, epoch, factor=float(hp.get("lr_decay", 0.5)), every=int(hp.get("lr_step", 5))
    ),
    "exponential": lambda lr0, epoch, hp, drops: exponential(
        lr0, epoch, k=float(hp.get("lr_k", 0.1))
    ),
    "inverse_time": lambda lr0, epoch, hp, drops: inverse_time(
        lr0, epoch, k=float(hp.get("lr_k", 0.1))
    ),
    "plateau": lambda lr0, epoch, hp, drops: lr0 * float(hp.get("lr_decay", 0.5)) ** drops,
}


def learning_rate_at(hp: Mapping[str, Any], epoch: int, plateau_drops: int = 0) -> float:
    """The learning rate of a 0-based epoch under `hp["schedule"]` (default "none").

    Raises:
        ValueError: for an unknown schedule, listing the valid names.
    """
    name = str(hp.get("schedule", "none"))
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; valid: {', '.join(sorted(SCHEDULES))}")
    return SCHEDULES[name](float(hp["learning_rate"]), epoch, hp, plateau_drops)


@dataclass
class PlateauTracker:
    """Counts drops: one each time validation accuracy fails to improve for `patience`
    epochs (the seed: "reduce the learning rate by a constant (e.g. 0.5) whenever the
    validation error stops improving")."""

    patience: int = 2
    best: float = -math.inf
    stale: int = 0
    drops: int = 0

    def step(self, val_accuracy: float) -> int:
        """Record an epoch's validation accuracy; returns the number of drops so far."""
        if val_accuracy > self.best:
            self.best, self.stale = val_accuracy, 0
        else:
            self.stale += 1
            if self.stale >= self.patience:
                self.drops, self.stale = self.drops + 1, 0
        return self.drops
