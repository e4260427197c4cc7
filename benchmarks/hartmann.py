"""The multi-fidelity Hartmann functions of `mf-prior-bench` (mfh3, mfh6), with epochs as
the fidelity (the multi-fidelity suite).

`mf-prior-bench` itself cannot be installed beside this project: it pins `numpy<2.0`
(gridless runs NumPy 2) and pulls ConfigSpace, pandas and pyarrow for its other suites.
Its synthetic functions are a few lines of NumPy, so they are written out here after
its `mfpbench/synthetic/hartmann/generators.py` (version 1.10.0): at fidelity z of
1..Z, with s = log(z) / log(Z),

    f(x, z) = -sum_i (alpha_i - bias * (1 - s)) * exp(-sum_j A_ij (x_j - P_ij)^2)
              + |N(0, 1)| * noise * (1 - s)

so low fidelities are flatter and noisier, and z = Z is the plain Hartmann function
(minimised; mfh3's minimum is -3.86278, mfh6's -3.32237). The defaults are the
package's (bias 0.5, noise 0.1). The noise is drawn from a generator seeded by the
configuration and the fidelity, so a repeated query gives the same value (the package
seeds it from Python's `hash`; the distribution is the same, the draws are not).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
_A = {
    3: np.array([[3.0, 10, 30], [0.1, 10, 35], [3.0, 10, 30], [0.1, 10, 35]]),
    6: np.array(
        [
            [10, 3, 17, 3.5, 1.7, 8],
            [0.05, 10, 17, 0.1, 8, 14],
            [3, 3.5, 1.7, 10, 17, 8],
            [17, 8, 0.05, 10, 0.1, 14],
        ]
    ),
}
_P = {
    3: 1e-4
    * np.array([[3689, 1170, 2673], [4699, 4387, 7470], [1091, 8732, 5547], [381, 5743, 8828]]),
    6: 1e-4
    * np.array(
        [
            [1312, 1696, 5569, 124, 8283, 5886],
            [2329, 4135, 8307, 3736, 1004, 9991],
            [2348, 1451, 3522, 2883, 3047, 6650],
            [4047, 8828, 8732, 5743, 1091, 381],
        ]
    ),
}
# The known minimisers (mf-prior-bench's `optimum`), refined by `_optimum`.
_ARGMIN = {
    3: (0.114614, 0.555649, 0.852547),
    6: (0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573),
}


def hartmann(
    x: Sequence[float],
    z: int,
    *,
    dims: int,
    max_z: int,
    bias: float,
    noise: float,
    seed: int = 1337,
) -> float:
    """The value of the `dims`-dimensional multi-fidelity Hartmann function at x, z."""
    s = float(np.log(z) / np.log(max_z)) if max_z > 1 else 1.0
    xs = np.asarray(x, dtype=np.float64)
    inner = np.sum(_A[dims] * (xs - _P[dims]) ** 2, axis=1)
    value = -float(np.sum((_ALPHA - bias * (1 - s)) * np.exp(-inner)))
    if noise and s < 1:
        rng = np.random.default_rng([seed, int(z), *xs.view(np.uint64).tolist()])
        value += abs(float(rng.normal())) * noise * (1 - s)
    return value


@functools.cache
def _optimum(dims: int) -> float:
    """The true minimum: L-BFGS-B from the published minimiser, inside [0, 1]^dims."""
    from scipy.optimize import minimize

    def f(x: np.ndarray) -> float:
        return hartmann(x, 1, dims=dims, max_z=1, bias=0.0, noise=0.0)

    start = np.array(_ARGMIN[dims])
    found = minimize(f, start, method="L-BFGS-B", bounds=[(0.0, 1.0)] * dims, tol=1e-14)
    return min(float(found.fun), f(start))


@dataclass(frozen=True)
class HartmannProblem:
    """mfh3 or mfh6 with `max_epochs` fidelities: epoch e of a trial is fidelity z = e."""

    dims: int
    max_epochs: int = 9
    bias: float = 0.5
    noise: float = 0.1

    suite = "mfh"
    metric = "value"
    mode = "min"

    @property
    def dataset(self) -> str:
        return f"mfh{self.dims}"

    @property
    def name(self) -> str:
        return f"{self.suite}/{self.dataset}"

    def space(self) -> dict[str, dict[str, list[float]]]:
        return {f"X_{i}": {"uniform": [0.0, 1.0]} for i in range(self.dims)}

    def at(self, params: Mapping[str, Any], epoch: int) -> float:
        """The value a trial reports after `epoch` epochs (fidelity z = epoch)."""
        x = [float(params[f"X_{i}"]) for i in range(self.dims)]
        z = min(max(int(epoch), 1), self.max_epochs)
        return hartmann(
            x, z, dims=self.dims, max_z=self.max_epochs, bias=self.bias, noise=self.noise
        )

    def value(self, params: Mapping[str, Any]) -> float:
        """The true value of a configuration: its value at the full fidelity."""
        return self.at(params, self.max_epochs)

    @property
    def optimum(self) -> float:
        return _optimum(self.dims)

    def regret(self, value: float) -> float:
        return value - self.optimum


def hartmann_problems(dims: tuple[int, ...] = (6,)) -> list[HartmannProblem]:
    """The multi-fidelity suite: mfh6 by default (`python -m benchmarks.search_quality
    --mfh3` adds mfh3; it is left out of the default run to keep it near 20 minutes)."""
    return [HartmannProblem(d) for d in dims]
