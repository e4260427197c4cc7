"""Warnings derived from a trial's per-epoch statistics (the seed's "Babysitting the
learning process"). Pure functions of the epochs so far; the worker sends them with each
report and the master keeps the first occurrence of each code per trial. The rules and
their thresholds are listed in docs/babysitting.md. Regression epochs (no accuracies)
are judged on their R² instead where a rule needs a score.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gridless.worker.models import NumpyModel
from gridless.worker.trainer import EpochMetrics

__all__ = ["TrialWarning", "activation_variances", "epoch_warnings"]

RATIO_LOW, RATIO_HIGH = 1e-5, 1e-1
VANISH_RATIO, EXPLODE_RATIO = 1e-3, 1e3
VANISH_ABS, EXPLODE_ABS = 1e-6, 1e3
OVERFIT_GAP = 0.15
CHANCE_MARGIN = 0.05
# Dead units: a hidden layer where this share of the units output 0 for a
# whole minibatch, or a loss that rose to this many times its first value before the
# updates stalled, says the learning rate was too high, not too low.
DEAD_FRACTION = 0.9
SPIKE_FACTOR = 2.0


@dataclass(frozen=True)
class TrialWarning:
    """One finding about a trial: a stable code and a message a person can act on."""

    code: str
    message: str
    epoch: int

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "epoch": self.epoch}


def _weight_ratio(stats: dict[str, Any]) -> float | None:
    ratios = [
        v
        for k, v in stats.get("update_ratio", {}).items()
        if v is not None and ("W" in k.split(".")[-1] or k.endswith("weight"))
    ]
    return float(np.median(ratios)) if ratios else None


def activation_variances(model: NumpyModel, x: np.ndarray, y: np.ndarray) -> list[float]:
    """Variance of each hidden layer's activations on x (the seed's per-layer table)."""
    model.loss(x, y, seed=0, record=True)
    return [float(layer["act_std"]) ** 2 for layer in model.layer_stats]


def _activations(layers: Sequence[dict[str, Any]], epoch: int) -> list[TrialWarning]:
    stds = [float(layer["act_std"]) for layer in layers if layer.get("act_std") is not None]
    if not stds:
        return []
    first, last = stds[0], stds[-1]
    table = ", ".join(f"{s:.1e}" for s in stds)
    if min(stds) < VANISH_ABS or (len(stds) > 1 and last < VANISH_RATIO * first):
        return [
            TrialWarning(
                "vanishing_activations",
                f"activation std falls through the layers ({table}): check the initialization",
                epoch,
            )
        ]
    if max(stds) > EXPLODE_ABS or (len(stds) > 1 and last > EXPLODE_RATIO * first):
        return [
            TrialWarning(
                "exploding_activations",
                f"activation std grows through the layers ({table}): check the initialization",
                epoch,
            )
        ]
    return []


def _dead_layers(layers: Sequence[dict[str, Any]]) -> list[tuple[int, float]]:
    """(layer number, dead fraction) of every hidden layer whose units are (almost) all
    dead. Without a `dead_fraction` statistic (a watched user model), a layer whose every
    output is 0 (mean and std both 0) counts as all dead."""
    dead = []
    for number, layer in enumerate(layers, start=1):
        fraction = layer.get("dead_fraction")
        if fraction is None:
            mean, std = layer.get("act_mean"), layer.get("act_std")
            if mean is None or std is None or not (abs(mean) < 1e-12 and std < 1e-12):
                continue
            fraction = 1.0
        if fraction is not None and math.isfinite(fraction) and fraction >= DEAD_FRACTION:
            dead.append((int(layer.get("layer", number)), float(fraction)))
    return dead


def _spike(history: Sequence[EpochMetrics]) -> tuple[float, float] | None:
    """(first, highest) loss when the loss rose to `SPIKE_FACTOR` times its first value
    (the median of the first three) at some point of the trial so far, else None."""
    losses = [
        float(v)
        for e in history
        for v in e.stats.get("loss_history", [])
        if v is not None and math.isfinite(v)
    ]
    if len(losses) < 2:
        return None
    first = float(np.median(losses[:3]))  # one lucky first minibatch is no baseline
    peak = max(losses)
    return (first, peak) if first > 0 and peak >= SPIKE_FACTOR * first else None


def _dead_units(history: Sequence[EpochMetrics], epoch: int) -> TrialWarning | None:
    """Dead ReLUs after large updates: the learning rate was too high (the seed). The
    layer statistics of epoch 1 are taken before its first update, so dead units there
    are the initialization's, unless the loss already spiked."""
    m = history[-1]
    dead = _dead_layers(m.stats.get("layers", []))
    spike = _spike(history)
    if not dead or (epoch == 1 and spike is None):
        return None
    where = ", ".join(f"layer {n}: {f:.0%}" for n, f in dead)
    rose = f" after the loss rose to {spike[1]:.3g} (first {spike[0]:.3g})" if spike else ""
    return TrialWarning(
        "dead_units",
        f"dead ReLUs ({where} of the units output 0 on a whole minibatch){rose}: "
        "learning rate too high",
        epoch,
    )


def _scores(m: EpochMetrics) -> tuple[str, float, float] | None:
    """(name, training score, validation score): the accuracies, or for regression the
    R² values in `metrics`; None when the epoch has neither."""
    if m.train_accuracy is not None and m.val_accuracy is not None:
        return "accuracy", m.train_accuracy, m.val_accuracy
    if "train_r2" in m.metrics and "val_r2" in m.metrics:
        return "R²", m.metrics["train_r2"], m.metrics["val_r2"]
    return None


def epoch_warnings(
    history: Sequence[EpochMetrics], *, num_classes: int | None, chance_loss: float | None
) -> list[TrialWarning]:
    """Warnings for the latest epoch of `history` (epochs numbered from 1)."""
    if not history:
        return []
    epoch = len(history)
    m = history[-1]
    found: list[TrialWarning] = []
    if m.diverged:
        found.append(
            TrialWarning(
                "diverged",
                f"the loss became non-finite or exploded in epoch {epoch}: the trial was stopped "
                "(learning rate too high?)",
                epoch,
            )
        )
    dead = None if m.diverged else _dead_units(history, epoch)
    if dead is not None:
        found.append(dead)
    ratio = _weight_ratio(m.stats)
    # a tiny ratio after the loss spiked, or with dead units, is a net the updates killed:
    # its learning rate was too high, and "too low" would point the wrong way
    stalled = dead is not None or _spike(history) is not None
    if ratio is not None and math.isfinite(ratio) and ratio > 0:
        if ratio > RATIO_HIGH:
            found.append(
                TrialWarning(
                    "lr_too_high",
                    f"update:weight ratio {ratio:.1e} is far above ~1e-3: learning rate too high",
                    epoch,
                )
            )
        elif ratio < RATIO_LOW and stalled and dead is None:
            spike = _spike(history)
            assert spike is not None
            found.append(
                TrialWarning(
                    "dead_units",
                    f"update:weight ratio {ratio:.1e} is far below ~1e-3 after the loss rose "
                    f"to {spike[1]:.3g} (first {spike[0]:.3g}): the updates stalled a net "
                    "they overshot; learning rate too high",
                    epoch,
                )
            )
        elif ratio < RATIO_LOW and not stalled:
            found.append(
                TrialWarning(
                    "lr_too_low",
                    f"update:weight ratio {ratio:.1e} is far below ~1e-3: learning rate too low",
                    epoch,
                )
            )
    if dead is None:  # dead units explain a collapsed activation std better than the init
        found.extend(_activations(m.stats.get("layers", []), epoch))
    losses = history[0].stats.get("loss_history") or []
    # the data loss before any update (reg off, as the seed says); else the first loss
    initial = history[0].stats.get("initial_data_loss", losses[0] if losses else None)
    if epoch == 1 and chance_loss and initial is not None and math.isfinite(initial):
        first = float(initial)
        if not 0.5 * chance_loss <= first <= 3.0 * chance_loss:
            found.append(
                TrialWarning(
                    "initial_loss_far_from_chance",
                    f"initial loss {first:.3g} is far from the chance loss {chance_loss:.3g}: "
                    "check the initialization scale and the loss",
                    epoch,
                )
            )
    scores = _scores(m)
    if not m.diverged and scores is not None and scores[1] - scores[2] > OVERFIT_GAP:
        name, train, val = scores
        found.append(
            TrialWarning(
                "overfitting",
                f"training {name} {train:.2f} is far above validation "
                f"{val:.2f}: more regularization or data",
                epoch,
            )
        )
    all_losses = [v for e in history for v in e.stats.get("loss_history", []) if v is not None]
    if not m.diverged and len(all_losses) >= 2:
        tenth = max(1, len(all_losses) // 10)
        start, end = np.mean(all_losses[:tenth]), np.mean(all_losses[-tenth:])
        flat = math.isfinite(start) and math.isfinite(end) and end > 0.95 * start
        # chance: 1/C for accuracy; R² 0 (predicting the mean) for regression
        chance = None
        if scores is not None and scores[0] == "R²":
            chance = CHANCE_MARGIN
        elif scores is not None and num_classes:
            chance = 1 / num_classes + CHANCE_MARGIN
        if flat and scores is not None and chance is not None and scores[2] <= chance:
            found.append(
                TrialWarning(
                    "not_learning",
                    f"after {epoch} epoch(s) validation {scores[0]} {scores[2]:.2f} is at "
                    f"chance and the loss barely moved ({start:.3g} -> {end:.3g})",
                    epoch,
                )
            )
    return found
