"""Synthetic objectives with known optima for quick sampler comparisons
(benchmarks/sampler_harness.py): Branin (2-D) and Hartmann-6, on plain ranges and on log
ranges (a parameter p searched log-uniformly over [1e-4, 1] maps linearly from log10 p
onto the function's own interval), both minimised.

Branin: f(x) = (x2 - 5.1/(4 pi^2) x1^2 + 5/pi x1 - 6)^2 + 10 (1 - 1/(8 pi)) cos x1 + 10
on [-5, 10] x [0, 15], minimum 0.397887 (three minimisers). Hartmann-6 on [0, 1]^6,
minimum -3.32237 (the coefficients of benchmarks/hartmann.py at full fidelity).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from benchmarks.hartmann import hartmann

__all__ = ["SYNTHETIC", "SyntheticProblem"]

_LOG_LOW = -4.0  # log ranges: [1e-4, 1]


def branin(x1: float, x2: float) -> float:
    b, c = 5.1 / (4 * math.pi**2), 5 / math.pi
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x1) + 10


@dataclass(frozen=True)
class SyntheticProblem:
    """A function on a box, searched on plain or log ranges."""

    name: str
    dims: int
    bounds: tuple[tuple[float, float], ...]
    optimum: float
    log: bool = False

    def space(self) -> dict[str, dict[str, list[float]]]:
        if self.log:
            return {f"x{i}": {"log_uniform": [10**_LOG_LOW, 1.0]} for i in range(self.dims)}
        return {f"x{i}": {"uniform": [lo, hi]} for i, (lo, hi) in enumerate(self.bounds)}

    def point(self, params: Mapping[str, Any]) -> list[float]:
        out = []
        for i, (lo, hi) in enumerate(self.bounds):
            v = float(params[f"x{i}"])
            if self.log:
                v = lo + (hi - lo) * (math.log10(v) - _LOG_LOW) / -_LOG_LOW
            out.append(min(max(v, lo), hi))  # a border walk may sample beyond: clamp
        return out

    def value(self, params: Mapping[str, Any]) -> float:
        x = self.point(params)
        if self.dims == 2:
            return branin(x[0], x[1])
        return hartmann(x, 1, dims=6, max_z=1, bias=0.0, noise=0.0)

    def regret(self, value: float) -> float:
        return value - self.optimum


_BRANIN = ((-5.0, 10.0), (0.0, 15.0))
_H6 = ((0.0, 1.0),) * 6
SYNTHETIC: dict[str, SyntheticProblem] = {
    "branin": SyntheticProblem("branin", 2, _BRANIN, 0.397887),
    "branin-log": SyntheticProblem("branin-log", 2, _BRANIN, 0.397887, log=True),
    "hartmann6": SyntheticProblem("hartmann6", 6, _H6, -3.32237),
    "hartmann6-log": SyntheticProblem("hartmann6-log", 6, _H6, -3.32237, log=True),
}
