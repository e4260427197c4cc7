"""Weight initialization: variance-preserving (He for ReLU, Xavier) or the seed's naive
small Gaussian (std 0.01), which makes activations vanish in deep nets."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["INITS", "init_weights"]


def he(rng: np.random.Generator, fan_in: int, shape: tuple[int, ...]) -> np.ndarray:
    """N(0, 2 / fan_in): keeps ReLU activations' variance through depth."""
    return np.asarray(rng.standard_normal(shape) * np.sqrt(2.0 / fan_in))


def xavier(rng: np.random.Generator, fan_in: int, shape: tuple[int, ...]) -> np.ndarray:
    """N(0, 1 / fan_in)."""
    return np.asarray(rng.standard_normal(shape) * np.sqrt(1.0 / fan_in))


def naive(rng: np.random.Generator, fan_in: int, shape: tuple[int, ...]) -> np.ndarray:
    """N(0, 0.01**2), the seed's example of a bad initialization for deep nets."""
    return np.asarray(rng.standard_normal(shape) * 0.01)


INITS: dict[str, Callable[[np.random.Generator, int, tuple[int, ...]], np.ndarray]] = {
    "he": he,
    "xavier": xavier,
    "naive": naive,
}


def init_weights(
    name: str, rng: np.random.Generator, fan_in: int, shape: tuple[int, ...]
) -> np.ndarray:
    """Initialize one weight array by scheme name.

    Raises:
        ValueError: for an unknown scheme, listing the valid names.
    """
    if name not in INITS:
        raise ValueError(f"unknown init {name!r}; valid: {', '.join(sorted(INITS))}")
    return INITS[name](rng, fan_in, shape)
