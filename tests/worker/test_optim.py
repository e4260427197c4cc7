"""Every NumPy update rule against torch.optim on the same gradient sequence."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from gridless.worker.optim import UPDATE_RULES, get_update_rule, momentum_at, nesterov
from gridless.worker.schedules import PlateauTracker, learning_rate_at

pytestmark = pytest.mark.torch

HP: dict[str, Any] = {
    "learning_rate": 0.01,
    "momentum": 0.9,
    "decay_rate": 0.99,
    "beta1": 0.9,
    "beta2": 0.999,
    "eps": 1e-8,
}


def torch_optimizer(name: str, param: Any) -> Any:
    from gridless.worker.torch_trainer import make_optimizer

    return make_optimizer(name, [{"params": [param]}], HP)


@pytest.mark.parametrize("name", sorted(UPDATE_RULES))
def test_rule_matches_torch_over_100_steps(name: str) -> None:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 3))
    grads = [rng.standard_normal((4, 3)) for _ in range(100)]
    param = torch.tensor(w.copy(), dtype=torch.float64, requires_grad=True)
    optimizer = torch_optimizer(name, param)
    rule, state = get_update_rule(name), {}
    for g in grads:
        w = rule(w, g, state, HP)
        param.grad = torch.tensor(g)
        optimizer.step()
    np.testing.assert_allclose(w, param.detach().numpy(), atol=1e-6, rtol=0)


def test_nesterov_stored_form_equals_the_look_ahead_form() -> None:
    # The seed: evaluate the gradient at x_ahead = x + mu * v, then v = mu v - lr dx_ahead,
    # x += v. Its variable transform stores x_ahead instead; both must trace the same path.
    a = np.diag([1.0, 10.0])  # f(x) = 0.5 x^T A x, gradient A x
    mu, lr = 0.9, 0.05
    x, v = np.array([1.0, 1.0]), np.zeros(2)
    stored, state = x.copy(), {}
    for _ in range(50):
        x_ahead = x + mu * v
        v = mu * v - lr * (a @ x_ahead)
        x = x + v
        stored = nesterov(stored, a @ stored, state, {"learning_rate": lr, "momentum": mu})
        np.testing.assert_allclose(stored, x + mu * v, atol=1e-12)


def test_nesterov_beats_plain_momentum_on_an_ill_conditioned_bowl() -> None:
    a = np.diag([1.0, 50.0])
    hp = {"learning_rate": 0.019, "momentum": 0.9}
    final = {}
    for name in ("momentum", "nesterov"):
        x, state = np.array([1.0, 1.0]), {}
        for _ in range(100):
            x = get_update_rule(name)(x, a @ x, state, hp)
        final[name] = float(0.5 * x @ a @ x)
    assert final["nesterov"] < final["momentum"]


def test_unknown_rule_lists_valid_names() -> None:
    with pytest.raises(
        ValueError,
        match=r"unknown update rule 'adamw'; valid: adagrad, adam, lbfgs, momentum, nesterov, rmsprop, sgd",
    ):
        get_update_rule("adamw")


@pytest.mark.parametrize(("epoch", "mu"), [(0, 0.5), (5, 0.745), (10, 0.99), (50, 0.99)])
def test_momentum_schedule_rises_from_start_to_final(epoch: int, mu: float) -> None:
    hp = {"momentum": 0.5, "momentum_final": 0.99, "momentum_epochs": 10}
    assert momentum_at(hp, epoch) == pytest.approx(mu)
    assert momentum_at({"momentum": 0.9}, epoch) == 0.9


def torch_schedule(name: str, hp: dict[str, Any], epochs: int) -> list[float]:
    """The rates torch's own `lr_scheduler` classes give (tests/worker/test_schedule_parity.py)."""
    from tests.worker.test_schedule_parity import torch_reference

    return torch_reference({"schedule": name, **hp}, [0.0] * epochs)


@pytest.mark.parametrize("name", ["step", "exponential", "inverse_time"])
def test_schedules_match_torch_schedulers(name: str) -> None:
    hp = {"learning_rate": 0.1, "lr_decay": 0.5, "lr_step": 3, "lr_k": 0.2, "lr_patience": 2}
    ours = [learning_rate_at({**hp, "schedule": name}, epoch) for epoch in range(12)]
    np.testing.assert_allclose(ours, torch_schedule(name, hp, 12), rtol=1e-12)


def test_schedule_values_follow_the_seed_formulas() -> None:
    hp = {"learning_rate": 1.0, "lr_decay": 0.5, "lr_step": 5, "lr_k": 0.1}
    assert learning_rate_at({**hp, "schedule": "step"}, 4) == 1.0
    assert learning_rate_at({**hp, "schedule": "step"}, 5) == 0.5
    assert learning_rate_at({**hp, "schedule": "exponential"}, 10) == pytest.approx(math.exp(-1))
    assert learning_rate_at({**hp, "schedule": "inverse_time"}, 10) == pytest.approx(0.5)
    assert learning_rate_at({**hp, "schedule": "none"}, 99) == 1.0
    with pytest.raises(
        ValueError,
        match=r"unknown schedule 'cosine'; valid: exponential, inverse_time, none, plateau, step",
    ):
        learning_rate_at({**hp, "schedule": "cosine"}, 0)


def test_plateau_halves_after_patience_epochs_without_improvement_like_torch() -> None:
    accuracies = [0.5, 0.6, 0.6, 0.6, 0.7, 0.7, 0.65, 0.9, 0.9, 0.9]
    tracker = PlateauTracker(patience=2)
    hp = {"learning_rate": 0.1, "lr_decay": 0.5, "schedule": "plateau"}
    ours = []
    for acc in accuracies:
        ours.append(learning_rate_at(hp, 0, tracker.drops))
        tracker.step(acc)
    from tests.worker.test_schedule_parity import torch_reference

    theirs = torch_reference({**hp, "lr_k": 0.1, "lr_step": 1, "lr_patience": 2}, accuracies)
    assert ours == pytest.approx(theirs)
    assert ours[-1] == pytest.approx(0.025)
