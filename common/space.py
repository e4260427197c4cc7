"""Search spaces: frozen, validated distributions that sample from an explicit Generator.

The seed ("Hyperparameter ranges"): learning rate and regularization are searched on a
log scale (`10 ** uniform(-6, 1)`), dropout on its own scale. Every distribution knows
its *sampling scale* so that coarse-to-fine narrowing can work in it (log10 for the
log distributions). Bounds are inclusive. A numeric range may carry hard `limits` that
no border extension crosses (issue 20): `{int_log_uniform: [16, 512], limits: [8, 4096]}`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from gridless.common.errors import SpecError

__all__ = [
    "Choice",
    "Distribution",
    "IntLogUniform",
    "IntUniform",
    "LogUniform",
    "NumericDistribution",
    "Uniform",
    "distribution_from_json",
    "parse_space",
    "sample_params",
    "space_from_json",
    "space_to_json",
]

ParamValue = float | int | str | bool


def _check_bounds(kind: str, low: Any, high: Any, *, log: bool, integer: bool) -> None:
    for name, value in (("low", low), ("high", high)):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SpecError(f"{kind}: `{name}` must be a number, but got {name}={value!r}")
        if integer and not float(value).is_integer():
            raise SpecError(f"{kind}: `{name}` must be an integer, but got {name}={value!r}")
        if not math.isfinite(value):
            raise SpecError(f"{kind}: `{name}` must be finite, but got {name}={value!r}")
    if low > high:
        raise SpecError(f"{kind}: `low <= high` must hold, but got low={low!r}, high={high!r}")
    if log and low <= 0:
        raise SpecError(
            f"{kind}: `low > 0` must hold for a log scale, but got low={low!r}, high={high!r}"
        )


def _check_limits(
    kind: str, low: float, high: float, limits: Any, *, log: bool, integer: bool
) -> None:
    if not isinstance(limits, tuple) or len(limits) != 2:
        raise SpecError(f"{kind}: `limits` must be [low, high], but got {limits!r}")
    try:
        _check_bounds(kind, limits[0], limits[1], log=log, integer=integer)
    except SpecError as exc:
        raise SpecError(str(exc).replace(f"{kind}: ", f"{kind} limits: ", 1)) from None
    if not limits[0] <= low <= high <= limits[1]:
        raise SpecError(
            f"{kind}: the range must lie inside its limits (`limits[0] <= low <= high <= "
            f"limits[1]`), but got [{low!r}, {high!r}] and limits [{limits[0]!r}, {limits[1]!r}]"
        )


class Distribution:
    """Base of every distribution: JSON round-trip and sampling."""

    kind: ClassVar[str]

    def sample(self, rng: np.random.Generator) -> ParamValue:
        """Draw one value using only `rng`."""
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        """The spec form, e.g. `{"log_uniform": [1e-6, 10.0]}`."""
        raise NotImplementedError

    def contains(self, value: Any) -> bool:
        """Whether `value` lies in the (inclusive) range."""
        raise NotImplementedError


@dataclass(frozen=True)
class NumericDistribution(Distribution):
    """A range `[low, high]`, inclusive; `to_scale` maps values to the sampling scale.

    `limits`, when set, are hard bounds around the range that narrowing and border
    extensions never cross (a hidden size of 38,982 is no search result, issue 20).
    """

    low: float
    high: float
    limits: tuple[float, float] | None = None

    log: ClassVar[bool] = False
    integer: ClassVar[bool] = False

    def __post_init__(self) -> None:
        _check_bounds(self.kind, self.low, self.high, log=self.log, integer=self.integer)
        if self.limits is not None:
            _check_limits(
                self.kind, self.low, self.high, self.limits, log=self.log, integer=self.integer
            )

    def to_scale(self, value: float) -> float:
        """Map a value into the sampling scale (log10 for log distributions)."""
        return math.log10(value) if self.log else float(value)

    def from_scale(self, scaled: float) -> float:
        """Inverse of `to_scale`."""
        return float(10.0**scaled) if self.log else float(scaled)

    def with_bounds(self, low: float, high: float) -> NumericDistribution:
        """The same kind of distribution over a new range (the same limits)."""
        return type(self)(low, high, self.limits)

    def contains(self, value: Any) -> bool:
        return isinstance(value, int | float) and self.low <= value <= self.high

    def to_json(self) -> dict[str, Any]:
        # the kind comes first: readers take the first key as the kind
        raw: dict[str, Any] = {self.kind: [self.low, self.high]}
        if self.limits is not None:
            raw["limits"] = list(self.limits)
        return raw


@dataclass(frozen=True)
class Uniform(NumericDistribution):
    """Uniform on the value's own scale (dropout, momentum)."""

    kind: ClassVar[str] = "uniform"

    def sample(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(self.low, self.high)) if self.low < self.high else self.low


@dataclass(frozen=True)
class LogUniform(NumericDistribution):
    """Uniform in log10 between `low` and `high` (learning rate, regularization)."""

    kind: ClassVar[str] = "log_uniform"
    log: ClassVar[bool] = True

    def sample(self, rng: np.random.Generator) -> float:
        lo, hi = math.log10(self.low), math.log10(self.high)
        value = float(10.0 ** rng.uniform(lo, hi)) if lo < hi else float(self.low)
        # 10**log10(x) can land a hair outside the inclusive bounds.
        return min(max(value, self.low), self.high)


@dataclass(frozen=True)
class IntUniform(NumericDistribution):
    """Integers uniform in `[low, high]`, both ends included."""

    kind: ClassVar[str] = "int"
    integer: ClassVar[bool] = True

    def sample(self, rng: np.random.Generator) -> int:
        return int(rng.integers(int(self.low), int(self.high), endpoint=True))

    def with_bounds(self, low: float, high: float) -> NumericDistribution:
        lo, hi = math.floor(low + 1e-9), math.ceil(high - 1e-9)
        return type(self)(lo, max(lo, hi), self.limits)


@dataclass(frozen=True)
class IntLogUniform(NumericDistribution):
    """Integers whose log10 is uniform (hidden sizes): rounding of a log-uniform draw."""

    kind: ClassVar[str] = "int_log_uniform"
    log: ClassVar[bool] = True
    integer: ClassVar[bool] = True

    def sample(self, rng: np.random.Generator) -> int:
        # Draw in [low - 0.5, high + 0.5) on the log scale so both ends are as likely
        # as their neighbours after rounding.
        lo = math.log10(max(self.low - 0.5, self.low / 2))
        hi = math.log10(self.high + 0.5)
        value = round(10.0 ** rng.uniform(lo, hi))
        return int(min(max(value, int(self.low)), int(self.high)))

    def with_bounds(self, low: float, high: float) -> NumericDistribution:
        lo, hi = max(1, math.floor(low + 1e-9)), math.ceil(high - 1e-9)
        return type(self)(lo, max(lo, hi), self.limits)


@dataclass(frozen=True)
class Choice(Distribution):
    """One of a fixed, non-empty list of options, each equally likely."""

    options: tuple[ParamValue, ...]

    kind: ClassVar[str] = "choice"

    def __post_init__(self) -> None:
        if len(self.options) == 0:
            raise SpecError("choice: the option list must not be empty, but got []")
        if len(set(self.options)) != len(self.options):
            raise SpecError(f"choice: options must be distinct, but got {list(self.options)!r}")
        for option in self.options:
            if not isinstance(option, str | int | float | bool):
                raise SpecError(
                    f"choice: options must be strings, numbers or booleans, but got {option!r}"
                )
            if isinstance(option, float) and not math.isfinite(option):
                raise SpecError(f"choice: options must be finite, but got {option!r}")

    def sample(self, rng: np.random.Generator) -> ParamValue:
        return self.options[int(rng.integers(len(self.options)))]

    def contains(self, value: Any) -> bool:
        return value in self.options

    def to_json(self) -> dict[str, Any]:
        return {self.kind: list(self.options)}


_NUMERIC_KINDS: dict[str, type[NumericDistribution]] = {
    cls.kind: cls for cls in (Uniform, LogUniform, IntUniform, IntLogUniform)
}
KINDS = (*_NUMERIC_KINDS, Choice.kind)


def distribution_from_json(name: str, raw: Any) -> Distribution:
    """Build one distribution from its spec form `{kind: args}`, for a numeric kind
    optionally with `limits: [low, high]`.

    Raises:
        SpecError: naming the parameter, e.g. "space.lr: unknown distribution 'loguniform'".
    """
    extra = {k: v for k, v in raw.items() if k == "limits"} if isinstance(raw, Mapping) else {}
    if not isinstance(raw, Mapping) or len(raw) - len(extra) != 1:
        raise SpecError(
            f"space.{name}: must be a mapping with exactly one of {', '.join(KINDS)}, "
            f"but got {raw!r}"
        )
    ((kind, args),) = ((k, v) for k, v in raw.items() if k != "limits")
    try:
        if kind == Choice.kind:
            if extra:
                raise SpecError("choice: has no limits; limits bound a numeric range")
            if not isinstance(args, list | tuple):
                raise SpecError(f"choice: expects a list of options, but got {args!r}")
            return Choice(tuple(args))
        if kind not in _NUMERIC_KINDS:
            raise SpecError(f"unknown distribution {kind!r}; valid: {', '.join(KINDS)}")
        if not isinstance(args, list | tuple) or len(args) != 2:
            raise SpecError(f"{kind}: expects [low, high], but got {args!r}")
        limits = extra.get("limits")
        if limits is not None:
            if not isinstance(limits, list | tuple) or len(limits) != 2:
                raise SpecError(f"{kind}: `limits` must be [low, high], but got {limits!r}")
            limits = (limits[0], limits[1])
        return _NUMERIC_KINDS[kind](args[0], args[1], limits)
    except SpecError as exc:
        raise SpecError(f"space.{name}: {exc}") from None


def parse_space(raw: Mapping[str, Any]) -> dict[str, Distribution]:
    """Build a whole search space (parameter name -> distribution), keeping spec order."""
    if not isinstance(raw, Mapping) or not raw:
        raise SpecError("space: must name at least one parameter")
    return {str(name): distribution_from_json(str(name), value) for name, value in raw.items()}


def space_to_json(space: Mapping[str, Distribution]) -> dict[str, Any]:
    """JSON form of a space; `parse_space(space_to_json(s)) == s`."""
    return {name: dist.to_json() for name, dist in space.items()}


space_from_json = parse_space


def sample_params(
    space: Mapping[str, Distribution], rng: np.random.Generator
) -> dict[str, ParamValue]:
    """Draw one value per parameter, in the space's order, using only `rng`."""
    return {name: dist.sample(rng) for name, dist in space.items()}
