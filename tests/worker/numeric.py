"""Centered-difference gradients and the seed's relative error, for tests."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def numeric_gradient(f: Callable[[], float], x: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """(f(x+h) - f(x-h)) / 2h for every entry of x (modified in place, then restored)."""
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + h
        plus = f()
        x[i] = old - h
        minus = f()
        x[i] = old
        grad[i] = (plus - minus) / (2 * h)
    return grad


# Below this, float64 centered differences (h = 1e-5, O(1) losses) cannot tell a number
# from zero; the seed: "roughly 1e-10 and smaller in absolute value is worrying".
ZERO = 1e-10


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / max(|a|, |b|), elementwise; 0 where both are (numerically) zero."""
    denom = np.maximum(np.abs(a), np.abs(b))
    zero = denom < ZERO
    err = np.where(zero, 0.0, np.abs(a - b) / np.where(zero, 1.0, denom))
    return float(err.max())


def numeric_gradient_array(
    forward: Callable[[], np.ndarray], x: np.ndarray, dout: np.ndarray, h: float = 1e-5
) -> np.ndarray:
    """Gradient of sum(forward() * dout) w.r.t. x, subtracting outputs before summing
    (summing first loses digits to cancellation)."""
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + h
        plus = forward().copy()
        x[i] = old - h
        minus = forward().copy()
        x[i] = old
        grad[i] = np.sum((plus - minus) * dout) / (2 * h)
    return grad


def check_layer(
    forward: Callable[[], np.ndarray],
    grads: dict[str, np.ndarray],
    inputs: dict[str, np.ndarray],
    dout: np.ndarray,
) -> dict[str, float]:
    """Relative error of each analytic gradient against centered differences."""
    return {
        name: rel_error(grads[name], numeric_gradient_array(forward, x, dout))
        for name, x in inputs.items()
    }
