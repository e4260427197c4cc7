"""Data sets generated on the spot for the tests: nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_linear_regression(
    path: Path, *, n: int = 600, d: int = 8, k: int = 1, noise: float = 0.1, seed: int = 0
) -> Path:
    """An `.npz` of x (n, d) ~ N(0, 1) and float targets y = x @ w + noise, shape (n,) for
    k = 1 and (n, k) otherwise; the noise keeps the best R² just below 1."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    y = x @ rng.standard_normal((d, k)) + noise * rng.standard_normal((n, k))
    np.savez(path, x=x, y=y[:, 0] if k == 1 else y)
    return path
