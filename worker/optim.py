"""Update rules (the seed's "Parameter updates"), one signature, one explicit registry.

Each rule is `update(w, dw, state, hp) -> w_next`: `state` is the rule's own dict for
that one parameter array (mutated in place), `hp` the hyperparameters.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

__all__ = ["UPDATE_RULES", "get_update_rule", "momentum", "sgd"]

UpdateRule = Callable[[np.ndarray, np.ndarray, dict[str, Any], Mapping[str, Any]], np.ndarray]


def sgd(w: np.ndarray, dw: np.ndarray, state: dict[str, Any], hp: Mapping[str, Any]) -> np.ndarray:
    """Vanilla update: x += -learning_rate * dx."""
    return np.asarray(w - hp["learning_rate"] * dw)


def momentum(
    w: np.ndarray, dw: np.ndarray, state: dict[str, Any], hp: Mapping[str, Any]
) -> np.ndarray:
    """Momentum update: v = mu * v - learning_rate * dx; x += v (mu defaults to 0.9)."""
    v = state.get("v")
    if v is None:
        v = np.zeros_like(w)
    v = hp.get("momentum", 0.9) * v - hp["learning_rate"] * dw
    state["v"] = v
    return np.asarray(w + v)


UPDATE_RULES: dict[str, UpdateRule] = {"sgd": sgd, "momentum": momentum}


def get_update_rule(name: str) -> UpdateRule:
    """Look up an update rule by name.

    Raises:
        ValueError: listing the valid names.
    """
    try:
        return UPDATE_RULES[name]
    except KeyError:
        valid = ", ".join(sorted(UPDATE_RULES))
        raise ValueError(f"unknown update rule {name!r}; valid: {valid}") from None
