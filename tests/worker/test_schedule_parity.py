"""Both trainers take their learning rate from the same pure schedules.

For every schedule the Torch trainer's rate per epoch equals what torch's own
`lr_scheduler` classes gave before it used `learning_rate_at` (the reference below, driven
by the trainer's own validation accuracies for `plateau`), and equals the NumPy trainer's
rate wherever the schedule does not depend on the run (all but `plateau`).
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch.optim import lr_scheduler

from gridless.worker.schedules import SCHEDULES
from gridless.worker.trainer import make_trainer

pytestmark = pytest.mark.torch

EPOCHS = 6
PARAMS: dict[str, Any] = {
    "learning_rate": 0.05,
    "hidden": 16,
    "lr_step": 2,
    "lr_decay": 0.5,
    "lr_k": 0.3,
    "lr_patience": 1,
}


def torch_reference(hp: dict[str, Any], val_accuracies: list[float]) -> list[float]:
    """The rates torch's schedulers give epoch by epoch (the Torch trainer's former code)."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=hp["learning_rate"])
    name, decay, k = hp["schedule"], hp["lr_decay"], hp["lr_k"]
    scheduler: Any = {
        "none": None,
        "step": lambda: lr_scheduler.StepLR(optimizer, step_size=hp["lr_step"], gamma=decay),
        "exponential": lambda: lr_scheduler.ExponentialLR(optimizer, gamma=math.exp(-k)),
        "inverse_time": lambda: lr_scheduler.LambdaLR(optimizer, lambda e: 1.0 / (1.0 + k * e)),
        "plateau": lambda: lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=decay, patience=hp["lr_patience"] - 1, threshold=0.0
        ),
    }[name]
    scheduler = scheduler() if scheduler is not None else None
    rates = []
    for accuracy in val_accuracies:
        rates.append(float(optimizer.param_groups[0]["lr"]))
        optimizer.step()
        if isinstance(scheduler, lr_scheduler.ReduceLROnPlateau):
            scheduler.step(accuracy)
        elif scheduler is not None:
            scheduler.step()
    return rates


def _run(model: str, hp: dict[str, Any]) -> tuple[list[float], list[float]]:
    trainer = make_trainer(model, "digits", hp, seed=3)
    epochs = [trainer.train_epoch() for _ in range(EPOCHS)]
    rates = [float(m.stats["learning_rate"]) for m in epochs]
    return rates, [float(m.val_accuracy or 0.0) for m in epochs]


@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
def test_both_trainers_follow_the_pure_schedule(schedule: str) -> None:
    hp = {**PARAMS, "schedule": schedule}
    if schedule == "plateau":  # a rate too small to move the accuracy: it must stall
        hp["learning_rate"] = 1e-5
    torch_rates, torch_accuracies = _run("torch.mlp", hp)
    assert torch_rates == pytest.approx(torch_reference(hp, torch_accuracies), rel=1e-9)
    numpy_rates, numpy_accuracies = _run("numpy.mlp", hp)
    assert numpy_rates == pytest.approx(torch_reference(hp, numpy_accuracies), rel=1e-9)
    if schedule != "plateau":  # the only schedule that depends on the run itself
        assert torch_rates == pytest.approx(numpy_rates, rel=1e-12)
    if schedule != "none":
        assert torch_rates[-1] < torch_rates[0]  # the schedule did act
