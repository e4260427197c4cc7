"""Update rules (the seed's "Parameter updates"), one signature, one explicit registry.

Each rule is `update(w, dw, state, hp) -> w_next`: `state` is the rule's own dict for
that one parameter array (mutated in place), `hp` the hyperparameters (`learning_rate`
and the rule's own, with defaults below). Formulas follow the seed; the adaptive rules
put the smoothing term outside the square root (`sqrt(cache) + eps`, as Adam's paper and
torch.optim do) so the two libraries agree step for step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

__all__ = [
    "UPDATE_RULES",
    "adagrad",
    "adam",
    "get_update_rule",
    "momentum",
    "momentum_at",
    "nesterov",
    "rmsprop",
    "sgd",
]

UpdateRule = Callable[[np.ndarray, np.ndarray, dict[str, Any], Mapping[str, Any]], np.ndarray]

DEFAULTS: dict[str, float] = {
    "momentum": 0.9,
    "decay_rate": 0.99,  # RMSProp's leak, the seed's typical [0.9, 0.99, 0.999]
    "beta1": 0.9,
    "beta2": 0.999,
    "eps": 1e-8,
}


def _hp(hp: Mapping[str, Any], name: str) -> float:
    return float(hp.get(name, DEFAULTS[name]))


def _zeros(state: dict[str, Any], key: str, like: np.ndarray) -> np.ndarray:
    value = state.get(key)
    return np.zeros_like(like) if value is None else np.asarray(value)


def momentum_at(hp: Mapping[str, Any], epoch: int) -> float:
    """The momentum for an epoch (0-based): fixed, or annealed linearly from `momentum` to
    `momentum_final` over `momentum_epochs` epochs (the seed: "start with momentum of
    about 0.5 and anneal it to 0.99 or so over multiple epochs")."""
    start = _hp(hp, "momentum")
    final = hp.get("momentum_final")
    if final is None:
        return start
    span = max(1, int(hp.get("momentum_epochs", 10)))
    frac = min(1.0, epoch / span)
    return start + frac * (float(final) - start)


def sgd(w: np.ndarray, dw: np.ndarray, state: dict[str, Any], hp: Mapping[str, Any]) -> np.ndarray:
    """Vanilla update: x += -learning_rate * dx."""
    return np.asarray(w - hp["learning_rate"] * dw)


def momentum(
    w: np.ndarray, dw: np.ndarray, state: dict[str, Any], hp: Mapping[str, Any]
) -> np.ndarray:
    """Momentum: v = mu * v - learning_rate * dx; x += v."""
    v = _hp(hp, "momentum") * _zeros(state, "v", w) - hp["learning_rate"] * dw
    state["v"] = v
    return np.asarray(w + v)


def nesterov(
    w: np.ndarray, dw: np.ndarray, state: dict[str, Any], hp: Mapping[str, Any]
) -> np.ndarray:
    """Nesterov momentum in the seed's form, storing the look-ahead parameters:
    v_prev = v; v = mu * v - learning_rate * dx; x += -mu * v_prev + (1 + mu) * v."""
    mu = _hp(hp, "momentum")
    v_prev = _zeros(state, "v", w)
    v = mu * v_prev - hp["learning_rate"] * dw
    state["v"] = v
    return np.asarray(w - mu * v_prev + (1 + mu) * v)


def adagrad(
    w: np.ndarray, dw: np.ndarray, state: dict[str, Any], hp: Mapping[str, Any]
) -> np.ndarray:
    """Adagrad: cache += dx**2; x += -learning_rate * dx / (sqrt(cache) + eps)."""
    cache = _zeros(state, "cache", w) + dw * dw
    state["cache"] = cache
    return np.asarray(w - hp["learning_rate"] * dw / (np.sqrt(cache) + _hp(hp, "eps")))


def rmsprop(
    w: np.ndarray, dw: np.ndarray, state: dict[str, Any], hp: Mapping[str, Any]
) -> np.ndarray:
    """RMSProp: cache = decay_rate * cache + (1 - decay_rate) * dx**2; then as Adagrad."""
    rho = _hp(hp, "decay_rate")
    cache = rho * _zeros(state, "cache", w) + (1 - rho) * dw * dw
    state["cache"] = cache
    return np.asarray(w - hp["learning_rate"] * dw / (np.sqrt(cache) + _hp(hp, "eps")))


def adam(
    w: np.ndarray, dw: np.ndarray, state: dict[str, Any], hp: Mapping[str, Any]
) -> np.ndarray:
    """Adam with bias correction (Kingma and Ba), per parameter array."""
    b1, b2 = _hp(hp, "beta1"), _hp(hp, "beta2")
    t = int(state.get("t", 0)) + 1
    m = b1 * _zeros(state, "m", w) + (1 - b1) * dw
    v = b2 * _zeros(state, "v", w) + (1 - b2) * dw * dw
    state.update(t=np.asarray(t), m=m, v=v)
    m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
    return np.asarray(w - hp["learning_rate"] * m_hat / (np.sqrt(v_hat) + _hp(hp, "eps")))


UPDATE_RULES: dict[str, UpdateRule] = {
    "sgd": sgd,
    "momentum": momentum,
    "nesterov": nesterov,
    "adagrad": adagrad,
    "rmsprop": rmsprop,
    "adam": adam,
}

# Names a study may use for `update`; "lbfgs" is full-batch and handled by the trainer.
UPDATE_NAMES = (*UPDATE_RULES, "lbfgs")


def get_update_rule(name: str) -> UpdateRule:
    """Look up an update rule by name.

    Raises:
        ValueError: listing the valid names.
    """
    try:
        return UPDATE_RULES[name]
    except KeyError:
        valid = ", ".join(sorted(UPDATE_NAMES))
        raise ValueError(f"unknown update rule {name!r}; valid: {valid}") from None
