"""Search spaces: frozen, validated distributions that sample from an explicit Generator.

The seed ("Hyperparameter ranges"): learning rate and regularization are searched on a
log scale (`10 ** uniform(-6, 1)`), dropout on its own scale. Every distribution knows
its *sampling scale* so that coarse-to-fine narrowing can work in it (log10 for the
log distributions). Bounds are inclusive. A numeric range may carry hard `limits` that
no border extension crosses: `{int_log_uniform: [16, 512], limits: [8, 4096]}`.

A parameter may be *conditional*: `momentum: {uniform: [0.5, 0.99], when: {optimizer: sgd}}`
is sampled only in trials whose `optimizer` (a choice) took one of the named values; in
every other trial it is absent from the parameters (not None, not a default). Parents are
sampled before their children, so `sample_params` and `suggest_params` (Optuna's
define-by-run interface) walk the same tree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np

from gridless.common.errors import SpecError

__all__ = [
    "Choice",
    "Condition",
    "Distribution",
    "IntLogUniform",
    "IntUniform",
    "LogUniform",
    "NumericDistribution",
    "Uniform",
    "active_names",
    "distribution_from_json",
    "is_active",
    "is_conditional",
    "parse_space",
    "prune_conditions",
    "sample_params",
    "sampling_order",
    "space_from_json",
    "space_to_json",
    "suggest_params",
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


@dataclass(frozen=True)
class Condition:
    """`when: {parent: value}` or `{parent: [values]}`: the parameter is sampled only in
    trials whose `parent` (a choice of the same space) took one of `values`."""

    parent: str
    values: tuple[ParamValue, ...]

    def holds(self, params: Mapping[str, Any]) -> bool:
        """Whether `params` has the parent with one of the values."""
        return self.parent in params and any(_same(params[self.parent], v) for v in self.values)

    def describe(self) -> str:
        """As a person reads it: "optimizer is sgd", "optimizer is sgd or nesterov"."""
        return f"{self.parent} is {' or '.join(str(v) for v in self.values)}"


def _same(a: Any, b: Any) -> bool:
    # True == 1 in Python; a condition on a boolean option must not match the integer 1
    return bool(a == b) and isinstance(a, bool) == isinstance(b, bool)


class Distribution:
    """Base of every distribution: JSON round-trip and sampling."""

    kind: ClassVar[str]
    when: tuple[Condition, ...]

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
    extensions never cross (a hidden size of 38,982 is no search result).
    """

    low: float
    high: float
    limits: tuple[float, float] | None = None
    when: tuple[Condition, ...] = ()

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
        """The same kind of distribution over a new range (the same limits and condition)."""
        return type(self)(low, high, self.limits, self.when)

    def contains(self, value: Any) -> bool:
        return isinstance(value, int | float) and self.low <= value <= self.high

    def to_json(self) -> dict[str, Any]:
        # the kind comes first: readers take the first key as the kind
        raw: dict[str, Any] = {self.kind: [self.low, self.high]}
        if self.limits is not None:
            raw["limits"] = list(self.limits)
        return _with_when(raw, self.when)


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
        return type(self)(lo, max(lo, hi), self.limits, self.when)


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
        return type(self)(lo, max(lo, hi), self.limits, self.when)


@dataclass(frozen=True)
class Choice(Distribution):
    """One of a fixed, non-empty list of options, each equally likely."""

    options: tuple[ParamValue, ...]
    when: tuple[Condition, ...] = ()

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
        return _with_when({self.kind: list(self.options)}, self.when)


def _with_when(raw: dict[str, Any], when: tuple[Condition, ...]) -> dict[str, Any]:
    """`raw` with its `when:` (a single value written bare, as a person writes it)."""
    if when:
        raw["when"] = {
            c.parent: c.values[0] if len(c.values) == 1 else list(c.values) for c in when
        }
    return raw


_NUMERIC_KINDS: dict[str, type[NumericDistribution]] = {
    cls.kind: cls for cls in (Uniform, LogUniform, IntUniform, IntLogUniform)
}
KINDS = (*_NUMERIC_KINDS, Choice.kind)


def _parse_when(raw: Any) -> tuple[Condition, ...]:
    """`when: {parent: value | [values]}` as conditions (the graph is checked by
    `parse_space`, which knows the other parameters)."""
    if not isinstance(raw, Mapping) or not raw:
        raise SpecError(
            f"when: expects {{parent: value}} or {{parent: [values]}} naming a choice "
            f"parameter, e.g. when: {{optimizer: sgd}}, but got {raw!r}"
        )
    conditions = []
    for parent, values in raw.items():
        listed = tuple(values) if isinstance(values, list | tuple) else (values,)
        if not listed:
            raise SpecError(f"when.{parent}: name at least one value of {parent}, but got []")
        for value in listed:
            if not isinstance(value, str | int | float | bool):
                raise SpecError(
                    f"when.{parent}: values are options of the choice {parent}, but got {value!r}"
                )
        conditions.append(Condition(str(parent), listed))
    return tuple(conditions)


def distribution_from_json(name: str, raw: Any) -> Distribution:
    """Build one distribution from its spec form `{kind: args}`, for a numeric kind
    optionally with `limits: [low, high]`, for any kind optionally with `when:`.

    Raises:
        SpecError: naming the parameter, e.g. "space.lr: unknown distribution 'loguniform'".
    """
    extra = (
        {k: v for k, v in raw.items() if k in ("limits", "when")}
        if isinstance(raw, Mapping)
        else {}
    )
    if not isinstance(raw, Mapping) or len(raw) - len(extra) != 1:
        raise SpecError(
            f"space.{name}: must be a mapping with exactly one of {', '.join(KINDS)}, "
            f"but got {raw!r}"
        )
    ((kind, args),) = ((k, v) for k, v in raw.items() if k not in extra)
    try:
        when = _parse_when(extra["when"]) if "when" in extra else ()
        if kind == Choice.kind:
            if "limits" in extra:
                raise SpecError("choice: has no limits; limits bound a numeric range")
            if not isinstance(args, list | tuple):
                raise SpecError(f"choice: expects a list of options, but got {args!r}")
            return Choice(tuple(args), when)
        if kind not in _NUMERIC_KINDS:
            raise SpecError(f"unknown distribution {kind!r}; valid: {', '.join(KINDS)}")
        if not isinstance(args, list | tuple) or len(args) != 2:
            raise SpecError(f"{kind}: expects [low, high], but got {args!r}")
        limits = extra.get("limits")
        if limits is not None:
            if not isinstance(limits, list | tuple) or len(limits) != 2:
                raise SpecError(f"{kind}: `limits` must be [low, high], but got {limits!r}")
            limits = (limits[0], limits[1])
        return _NUMERIC_KINDS[kind](args[0], args[1], limits, when)
    except SpecError as exc:
        raise SpecError(f"space.{name}: {exc}") from None


def _check_conditions(space: Mapping[str, Distribution]) -> None:
    """Every condition names another parameter, a choice whose options hold its values,
    and no chain of conditions comes back to where it started.

    Raises:
        SpecError: naming the parameter, its parent and the rule.
    """
    for name, dist in space.items():
        for cond in dist.when:
            where = f"space.{name}.when.{cond.parent}"
            parent = space.get(cond.parent)
            if cond.parent == name:
                raise SpecError(f"{where}: a parameter cannot depend on itself")
            if parent is None:
                raise SpecError(
                    f"{where}: not a parameter of the space ({', '.join(space)}); a "
                    "condition names a choice parameter"
                )
            if not isinstance(parent, Choice):
                raise SpecError(
                    f"{where}: {cond.parent} must be a choice to be a condition, but it "
                    f"is {parent.kind}"
                )
            for value in cond.values:
                if not any(_same(value, o) for o in parent.options):
                    raise SpecError(
                        f"{where}: {value!r} is not an option of {cond.parent} "
                        f"{list(parent.options)!r}"
                    )
    sampling_order(space)  # raises on a cycle


def parse_space(raw: Mapping[str, Any]) -> dict[str, Distribution]:
    """Build a whole search space (parameter name -> distribution), keeping spec order.

    Raises:
        SpecError: for a bad distribution or condition, naming the parameter.
    """
    if not isinstance(raw, Mapping) or not raw:
        raise SpecError("space: must name at least one parameter")
    space = {str(name): distribution_from_json(str(name), value) for name, value in raw.items()}
    _check_conditions(space)
    return space


def space_to_json(space: Mapping[str, Distribution]) -> dict[str, Any]:
    """JSON form of a space; `parse_space(space_to_json(s)) == s`."""
    return {name: dist.to_json() for name, dist in space.items()}


space_from_json = parse_space


def is_conditional(space: Mapping[str, Distribution]) -> bool:
    """Whether some parameter of `space` has a `when:`."""
    return any(dist.when for dist in space.values())


def is_active(dist: Distribution, params: Mapping[str, Any]) -> bool:
    """Whether a parameter with this distribution takes a value in a trial whose other
    parameters are `params` (always, for a parameter without `when:`)."""
    return all(cond.holds(params) for cond in dist.when)


def sampling_order(space: Mapping[str, Distribution]) -> list[str]:
    """The parameters, every parent before its children, otherwise in the space's order
    (so a space without conditions samples exactly as it always has).

    Raises:
        SpecError: when conditions form a cycle, naming it.
    """
    order: list[str] = []
    placed: set[str] = set()
    visiting: list[str] = []

    def visit(name: str) -> None:
        if name in placed:
            return
        if name in visiting:
            cycle = [*visiting[visiting.index(name) :], name]
            raise SpecError(f"space: the conditions form a cycle: {' -> '.join(cycle)}")
        visiting.append(name)
        for cond in space[name].when:
            if cond.parent in space:
                visit(cond.parent)
        visiting.pop()
        placed.add(name)
        order.append(name)

    for name in space:
        visit(name)
    return order


def active_names(space: Mapping[str, Distribution], params: Mapping[str, Any]) -> list[str]:
    """The parameters a trial with `params` has a value for, in the space's order: every
    unconditional one, and each conditional one whose condition `params` meets."""
    active: dict[str, Any] = {}
    for name in sampling_order(space):
        if is_active(space[name], active) and name in params:
            active[name] = params[name]
        elif is_active(space[name], active):
            active[name] = None  # missing, but its children still ask about it
    return [name for name in space if name in active]


def prune_conditions(space: Mapping[str, Distribution]) -> dict[str, Distribution]:
    """`space` with each condition cut to the options its parent still has (a narrowed
    choice may drop `sgd`), and without the parameters whose condition can no longer
    hold (with their own children)."""
    kept: dict[str, Distribution] = {}
    for name in sampling_order(space):
        dist = space[name]
        conditions = []
        for cond in dist.when:
            parent = kept.get(cond.parent)
            options = parent.options if isinstance(parent, Choice) else ()
            values = tuple(v for v in cond.values if any(_same(v, o) for o in options))
            conditions.append(Condition(cond.parent, values))
        if all(c.values for c in conditions) and isinstance(dist, NumericDistribution | Choice):
            kept[name] = replace(dist, when=tuple(conditions)) if dist.when else dist
    return {name: kept[name] for name in space if name in kept}


def sample_params(
    space: Mapping[str, Distribution], rng: np.random.Generator
) -> dict[str, ParamValue]:
    """Draw one value per active parameter, parents first, using only `rng`; the result
    is in the space's order and has no key for a parameter whose condition fails."""
    params: dict[str, ParamValue] = {}
    for name in sampling_order(space):
        dist = space[name]
        if is_active(dist, params):
            params[name] = dist.sample(rng)
    return {name: params[name] for name in space if name in params}


def suggest_params(trial: Any, space: Mapping[str, Distribution]) -> dict[str, ParamValue]:
    """Ask an Optuna trial (define-by-run: `trial.suggest_float` and friends) for one
    value per active parameter, parents first, so that a sampler built for conditional
    spaces (`TPESampler(multivariate=True, group=True)`) sees which subspace each trial
    lives in. Duck-typed: `common` does not import Optuna."""
    params: dict[str, ParamValue] = {}
    for name in sampling_order(space):
        dist = space[name]
        if not is_active(dist, params):
            continue
        if isinstance(dist, Choice):
            params[name] = trial.suggest_categorical(name, list(dist.options))
        elif isinstance(dist, NumericDistribution) and dist.integer:
            params[name] = trial.suggest_int(name, int(dist.low), int(dist.high), log=dist.log)
        elif isinstance(dist, NumericDistribution):
            params[name] = trial.suggest_float(name, dist.low, dist.high, log=dist.log)
        else:  # pragma: no cover - every distribution is numeric or a choice
            raise TypeError(f"no Optuna suggestion for {dist!r}")
    return {name: params[name] for name in space if name in params}
