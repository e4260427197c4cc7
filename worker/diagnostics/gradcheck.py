"""Gradient checks done the way the seed's "Gradient checks" section asks.

- centered differences, float64, a handful of datapoints;
- relative error |a - n| / max(|a|, |n|), counted as zero when both are (numerically)
  zero;
- a few dimensions from *every* parameter array (biases included), never a random
  sample of one flat vector;
- the data loss alone first, then the regularization alone;
- dropout and any other randomness under one fixed seed for every evaluation;
- kink detection: a dimension whose f(x+h) and f(x-h) see different "winners" (ReLU on
  or off, SVM margin active, max-pool winner) is reported and not judged;
- a sweep over step sizes h, keeping the best;
- a verdict per parameter in the seed's bands, with the threshold relaxed for depth.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from gridless.worker.models import NumpyModel

__all__ = [
    "CheckTarget",
    "GradcheckReport",
    "NumpyTarget",
    "ParamCheck",
    "gradient_check",
    "relative_error",
    "verdict",
]

STEPS = (1e-4, 1e-5, 1e-6, 1e-7)
# Below this, centered differences in float64 cannot tell a number from zero (the seed:
# "roughly 1e-10 and smaller in absolute value is worrying").
ZERO = 1e-10


def relative_error(analytic: float, numeric: float) -> float:
    """|a - n| / max(|a|, |n|); 0 when both are below the noise floor."""
    scale = max(abs(analytic), abs(numeric))
    return 0.0 if scale < ZERO else abs(analytic - numeric) / scale


def verdict(error: float, *, kinks: bool) -> str:
    """The seed's bands: > 1e-2 probably wrong; 1e-2..1e-4 uncomfortable; 1e-4..1e-7 fine
    with kinks (too high without); <= 1e-7 good."""
    if error > 1e-2:
        return "probably wrong"
    if error > 1e-4:
        return "uncomfortable"
    if error > 1e-7:
        return "ok (kinks)" if kinks else "too high without kinks"
    return "good"


def threshold(depth: int, *, kinks: bool) -> float:
    """The pass threshold: 1e-7 smooth, 1e-5 with kinks, relaxed by 10x every 3 layers
    past 2 (the seed: errors build up with depth; 1e-2 may be fine for 10 layers)."""
    base = 1e-5 if kinks else 1e-7
    return base * 10 ** (max(0, depth - 2) / 3)


class CheckTarget(Protocol):
    """A model and a handful of datapoints, seen as a function of its parameters."""

    params: dict[str, np.ndarray]  # float64 arrays the loss reads; editing them changes it
    has_kinks: bool
    depth: int
    reg: float  # the L2 strength the regularization term uses
    output_weight: str  # name of the last layer's weights (scaled down for chance checks)
    output_bias: str  # and of its biases (set to the targets' mean for a regression's chance)

    def loss(self, *, data: bool, reg: bool) -> tuple[float, dict[str, np.ndarray]]:
        """The loss (data term, regularization term, or both) and its analytic gradient."""
        ...

    def kinks(self) -> np.ndarray:
        """The winners of every max at the current parameters (see NumpyModel)."""
        ...


class NumpyTarget:
    """A NumPy model on fixed datapoints, with dropout masks from one fixed seed.

    `fixed_seed=False` draws fresh masks on every evaluation: the mistake the seed warns
    about, kept so that tests can show the check catching it.
    """

    def __init__(
        self,
        model: NumpyModel,
        x: np.ndarray,
        y: np.ndarray,
        *,
        seed: int = 0,
        fixed_seed: bool = True,
    ) -> None:
        self.model = model
        self.x = np.asarray(x, dtype=np.float64)
        self.y = y
        self.seed = seed
        self.fixed_seed = fixed_seed
        self._draws = np.random.default_rng(seed)
        self.params = model.params
        self.depth = model.depth()
        self.has_kinks = True  # ReLU nets always have kinks
        self.output_weight = model.weight_names()[-1]
        self.output_bias = "b" + self.output_weight.removeprefix("W")

    @property
    def reg(self) -> float:
        return self.model.reg

    @reg.setter
    def reg(self, value: float) -> None:
        self.model.reg = value

    def _seed(self) -> int:
        return self.seed if self.fixed_seed else int(self._draws.integers(2**31))

    def loss(self, *, data: bool, reg: bool) -> tuple[float, dict[str, np.ndarray]]:
        model = self.model
        if data:
            strength = model.reg
            if not reg:
                model.reg = 0.0
            try:
                return model.loss(self.x, self.y, seed=self._seed())
            finally:
                model.reg = strength
        weights = set(model.weight_names())
        value = 0.5 * model.reg * sum(float(np.sum(model.params[k] ** 2)) for k in weights)
        grads = {
            k: model.reg * v if k in weights else np.zeros_like(v) for k, v in model.params.items()
        }
        return value, grads

    def kinks(self) -> np.ndarray:
        return self.model.kink_signature(self.x, self.y, seed=self.seed)


@dataclass(frozen=True)
class ParamCheck:
    """One parameter array in one phase: its worst relative error at the best step size."""

    name: str
    phase: str  # "data" or "regularization"
    dims: int
    h: float
    error: float
    errors_by_h: dict[float, float]
    kinks_crossed: int
    max_abs_gradient: float
    verdict: str
    passed: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "param": self.name,
            "phase": self.phase,
            "dims": self.dims,
            "h": self.h,
            "rel_error": self.error,
            "errors_by_h": {f"{h:g}": e for h, e in self.errors_by_h.items()},
            "kinks_crossed": self.kinks_crossed,
            "max_abs_gradient": self.max_abs_gradient,
            "verdict": self.verdict,
            "passed": self.passed,
        }


@dataclass
class GradcheckReport:
    """Every parameter's result; passes when every row does."""

    rows: list[ParamCheck] = field(default_factory=list)
    threshold: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.rows) and all(row.passed for row in self.rows)

    def failures(self) -> list[ParamCheck]:
        return [row for row in self.rows if not row.passed]


@contextmanager
def _nudged(array: np.ndarray, index: tuple[int, ...], delta: float) -> Iterator[None]:
    old = array[index]
    array[index] = old + delta
    try:
        yield
    finally:
        array[index] = old


def _sample_indices(
    shape: tuple[int, ...], count: int, rng: np.random.Generator
) -> list[tuple[int, ...]]:
    size = int(np.prod(shape))
    flat = rng.choice(size, size=min(count, size), replace=False)
    return [tuple(int(i) for i in np.unravel_index(int(f), shape)) for f in sorted(flat)]


def _check_param(
    target: CheckTarget,
    name: str,
    phase: str,
    indices: Sequence[tuple[int, ...]],
    analytic: np.ndarray,
    steps: Sequence[float],
    limit: float,
) -> ParamCheck:
    data, reg = phase == "data", phase == "regularization"
    array = target.params[name]
    errors_by_h: dict[float, float] = {}
    crossed_by_h: dict[float, int] = {}
    for h in steps:
        worst, crossed = 0.0, 0
        for index in indices:
            with _nudged(array, index, h):
                plus = target.loss(data=data, reg=reg)[0]
                plus_kinks = target.kinks() if data and target.has_kinks else None
            with _nudged(array, index, -h):
                minus = target.loss(data=data, reg=reg)[0]
                minus_kinks = target.kinks() if data and target.has_kinks else None
            if (
                plus_kinks is not None
                and minus_kinks is not None
                and not np.array_equal(plus_kinks, minus_kinks)
            ):
                crossed += 1  # a kink between x-h and x+h: this dimension is not judged
                continue
            numeric = (plus - minus) / (2 * h)
            worst = max(worst, relative_error(float(analytic[index]), numeric))
        errors_by_h[h], crossed_by_h[h] = worst, crossed
    best_h = min(steps, key=lambda h: (errors_by_h[h], crossed_by_h[h]))
    error = errors_by_h[best_h]
    kinky = target.has_kinks and data
    return ParamCheck(
        name=name,
        phase=phase,
        dims=len(indices),
        h=best_h,
        error=error,
        errors_by_h=errors_by_h,
        kinks_crossed=crossed_by_h[best_h],
        max_abs_gradient=float(np.max(np.abs(analytic))) if analytic.size else 0.0,
        verdict=verdict(error, kinks=kinky),
        passed=math.isfinite(error) and error <= limit,
    )


def gradient_check(
    target: CheckTarget,
    *,
    dims_per_param: int = 5,
    steps: Sequence[float] = STEPS,
    seed: int = 0,
) -> GradcheckReport:
    """Check every parameter array's gradient, data loss first, then regularization."""
    rng = np.random.default_rng(seed)
    limit = threshold(target.depth, kinks=target.has_kinks)
    report = GradcheckReport(threshold=limit)
    indices = {
        name: _sample_indices(array.shape, dims_per_param, rng)
        for name, array in target.params.items()
    }
    for phase in ("data", "regularization"):
        _, grads = target.loss(data=phase == "data", reg=phase == "regularization")
        for name in target.params:
            report.rows.append(
                _check_param(target, name, phase, indices[name], grads[name], steps, limit)
            )
    tiny = [r.name for r in report.rows if r.phase == "data" and 0 < r.max_abs_gradient < 1e-8]
    if tiny:
        report.notes.append(
            f"gradients of {', '.join(tiny)} are below 1e-8: scale the loss up if errors look odd"
        )
    return report


def burn_in(target: CheckTarget, *, steps: int, learning_rate: float) -> None:
    """A few plain gradient steps, so the check runs in a "characteristic mode" (the seed:
    a random initialization may hide a wrong gradient)."""
    for _ in range(steps):
        _, grads = target.loss(data=True, reg=True)
        for name, array in target.params.items():
            array -= learning_rate * grads[name]
