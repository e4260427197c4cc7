"""Dead units from a too-high learning rate are told apart from a too-low one.

A learning rate so high that every ReLU dies leaves the weights still (an update:weight
ratio far below 1e-3), which read as "learning rate too low" and raised a wrong-direction
flag. The loss history and the dead fraction say which it is.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from gridless.common.space import LogUniform
from gridless.master.evidence import TrialOutcome, learning_rate_flags
from gridless.worker.diagnostics.babysit import SPIKE_FACTOR, epoch_warnings
from gridless.worker.models import dead_fraction
from gridless.worker.trainer import EpochMetrics, make_trainer

# Plain SGD at lr 15 on a narrow net: the loss spikes in epoch 1, then every ReLU is dead
# and only the (tiny) L2 term moves the weights: a ratio of about 1.5e-6.
DEAD = {"learning_rate": 15.0, "update": "sgd", "hidden": 16, "reg": 1e-7}


def run(
    params: dict[str, Any], *, seed: int, epochs: int = 3
) -> tuple[list[EpochMetrics], list[set[str]]]:
    """Train a trial; its epochs and each epoch's warning codes."""
    trainer = make_trainer("numpy.mlp", "digits", params, seed=seed)
    history: list[EpochMetrics] = []
    codes: list[set[str]] = []
    for _ in range(epochs):
        history.append(trainer.train_epoch())
        m = history[-1]
        found = epoch_warnings(history, num_classes=10, chance_loss=m.stats.get("chance_loss"))
        codes.append({w.code for w in found})
        if m.diverged:
            break
    return history, codes


def test_a_net_killed_by_a_high_learning_rate_reads_too_high_not_too_low() -> None:
    history, per_epoch = run(DEAD, seed=2)
    codes = set().union(*per_epoch)
    last = history[-1]
    assert last.stats["layers"][0]["dead_fraction"] == 1.0
    ratio = last.stats["update_ratio"]["W1"]
    assert ratio < 1e-5  # what read as "learning rate too low" before
    assert "dead_units" in codes
    assert "lr_too_low" not in codes
    assert "vanishing_activations" not in codes  # not the initialization's fault


def test_a_truly_low_learning_rate_still_reads_too_low() -> None:
    _, per_epoch = run({"learning_rate": 1e-7}, seed=0, epochs=2)
    codes = set().union(*per_epoch)
    assert "lr_too_low" in codes
    assert "dead_units" not in codes


def test_a_stage_of_dead_nets_flags_its_learning_rate_range_too_high() -> None:
    """Three nets whose ReLUs all die (their ratio ends below 1e-5). The findings of
    epochs 2 and 3 are those of a net that died in its first steps, before a ratio above
    1e-1 was seen: the older rules flagged this range *too low*."""
    space = {"learning_rate": LogUniform(5.0, 50.0)}
    outcomes = []
    for lr, seed in ((15.0, 2), (20.0, 3), (30.0, 5)):
        history, per_epoch = run({**DEAD, "learning_rate": lr}, seed=seed)
        assert history[-1].stats["update_ratio"]["W1"] < 1e-5
        codes = frozenset(set().union(*per_epoch[1:]))
        assert "lr_too_high" not in codes
        score = history[-1].val_accuracy
        outcomes.append(TrialOutcome({"learning_rate": lr}, score, "completed", codes))
    (flag,) = learning_rate_flags(space, outcomes)
    assert flag.edge == "lower"  # the range must move down: too high
    assert flag.message.startswith("learning_rate range [5, 50] is too high: 3 of 3 trials")


def epoch(losses: list[float], *, ratio: float, layers: list[dict[str, float]] | None = None):
    stats: dict[str, Any] = {"loss_history": losses, "update_ratio": {"W1": ratio}}
    if layers is not None:
        stats["layers"] = layers
    return EpochMetrics(losses[-1], 0.1, losses[-1], 0.1, 0.0, False, stats)


@pytest.mark.parametrize(
    ("peak", "code"),
    [
        (2.3 * SPIKE_FACTOR, "dead_units"),  # exactly the spike factor counts
        (2.3 * SPIKE_FACTOR * 0.99, "lr_too_low"),
        (2.3, "lr_too_low"),
    ],
)
def test_a_spike_before_the_updates_stalled_is_too_high(peak: float, code: str) -> None:
    """A watched user model has no dead fraction: the loss history decides."""
    history = [epoch([2.3, 2.3, 2.3, peak, 2.3], ratio=0.3), epoch([2.3] * 5, ratio=1e-7)]
    codes = {w.code for w in epoch_warnings(history, num_classes=None, chance_loss=None)}
    assert code in codes
    assert ({"dead_units", "lr_too_low"} - {code}).isdisjoint(codes)


def test_dead_units_at_initialization_are_not_blamed_on_the_learning_rate() -> None:
    dead = [{"layer": 1.0, "act_mean": 0.0, "act_std": 0.0, "dead_fraction": 1.0}]
    first = [epoch([2.3, 2.3, 2.2], ratio=1e-3, layers=dead)]
    codes = {w.code for w in epoch_warnings(first, num_classes=None, chance_loss=None)}
    assert "dead_units" not in codes
    assert "vanishing_activations" in codes
    later = [*first, epoch([2.3, 2.3, 2.3], ratio=1e-3, layers=dead)]
    found = epoch_warnings(later, num_classes=None, chance_loss=None)
    (dead_warning,) = [w for w in found if w.code == "dead_units"]
    assert "layer 1: 100%" in dead_warning.message
    # without a dead fraction (a watched model), all-zero outputs are all dead
    zeros = [{"layer": 1.0, "act_mean": 0.0, "act_std": 0.0}]
    codes = {
        w.code
        for w in epoch_warnings(
            [*first, epoch([2.3] * 3, ratio=1e-3, layers=zeros)],
            num_classes=None,
            chance_loss=None,
        )
    }
    assert "dead_units" in codes


@pytest.mark.parametrize(
    ("act", "fraction"),
    [
        (np.array([[0.0, 1.0], [0.0, 2.0]]), 0.5),  # unit 0 never fires
        (np.array([[0.0, 0.0], [1.0, 0.0]]), 0.5),  # unit 0 fires once: alive
        (np.zeros((3, 4)), 1.0),
        (np.ones((3, 4)), 0.0),
        (np.concatenate([np.zeros((2, 1, 2, 2)), np.ones((2, 1, 2, 2))], axis=1), 0.5),
    ],
)
def test_dead_fraction_counts_units_silent_on_every_example(
    act: np.ndarray, fraction: float
) -> None:
    assert dead_fraction(act) == fraction


@pytest.mark.torch
def test_the_torch_dead_fraction_matches_the_numpy_one() -> None:
    import torch

    from gridless.worker.torch_stats import _dead

    rng = np.random.default_rng(0)
    for shape in ((8, 5), (4, 3, 2, 2)):
        act = np.maximum(rng.normal(size=shape) - 1.0, 0.0)
        assert float(_dead(torch.from_numpy(act))) == pytest.approx(dead_fraction(act))
