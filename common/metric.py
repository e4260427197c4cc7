"""The metric a study optimizes: a name the trials report and a direction.

`metric: val_accuracy` and `metric: val_loss` are the short forms of the built-in models;
any other metric is named with its direction, `metric: {name: val_r2, mode: max}`. No range
is imposed on a user's metric beyond finiteness: an R² may be negative, an RMSE large.

A list of metrics makes a multi-objective study, `metric: [{name: val_f1, mode: max},
{name: latency_ms, mode: min}]`: its result is the Pareto front (master/pareto.py). The
first objective is the study's *primary* metric: it ranks trials, picks each trial's best
epoch and checkpoint, and drives TPE and the stop rules; the others are read at that
epoch.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from sqlalchemy import ColumnElement, SQLColumnExpression, UnaryExpression, func

from gridless.common.errors import SpecError

__all__ = [
    "BUILTIN_METRICS",
    "KNOWN_DIRECTIONS",
    "RESERVED_NAMES",
    "Metric",
    "check_metric_name",
    "merged_metrics",
    "parse_metric",
    "parse_objectives",
]

# At most this many objectives: a front in more dimensions holds nearly every trial.
MAX_OBJECTIVES = 4

# The numbers the built-in trainers report in fields (and columns) of their own.
BUILTIN_METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")

# Short forms: a bare name whose direction needs no saying.
KNOWN_DIRECTIONS: dict[str, Literal["min", "max"]] = {
    "val_accuracy": "max",
    "val_loss": "min",
    "val_rmse": "min",
    "val_r2": "max",
}

# Names a report cannot use for a metric: they are fields of the report itself.
RESERVED_NAMES = frozenset(
    {"epoch", "attempt", "worker_id", "seconds", "diverged", "checkpoint", "stats", "warnings"}
)

T = TypeVar("T")

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")


def check_metric_name(name: object, *, where: str = "metric") -> str:
    """A metric name: letters, digits and `_`, at most 32, not a reserved report field.

    Raises:
        SpecError: naming the rule and the value.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise SpecError(
            f"{where}: a metric name is a letter then letters, digits or _ (at most 32), "
            f"but got {name!r}"
        )
    if name in RESERVED_NAMES:
        raise SpecError(
            f"{where}: {name!r} is a reserved report field; valid metric names exclude "
            + ", ".join(sorted(RESERVED_NAMES))
        )
    return name


@dataclass(frozen=True)
class Metric:
    """The objective: which reported number, and whether larger is better."""

    name: str
    mode: Literal["min", "max"]

    @classmethod
    def of(cls, name: str, *, maximize: bool) -> Metric:
        """The metric from a stored name and `maximize` flag (the database's columns)."""
        return cls(name, "max" if maximize else "min")

    @property
    def maximize(self) -> bool:
        """Whether larger values are better."""
        return self.mode == "max"

    @property
    def sign(self) -> float:
        """+1 or -1: `sign * score` is larger for better scores (for sorts and percentiles)."""
        return 1.0 if self.maximize else -1.0

    @property
    def direction(self) -> Literal["maximize", "minimize"]:
        """The direction in Optuna's words, for `optuna.create_study(direction=...)`."""
        return "maximize" if self.maximize else "minimize"

    @property
    def comparison(self) -> str:
        """How a score at least as good as another reads: `>=` or `<=`."""
        return ">=" if self.maximize else "<="

    @property
    def beyond(self) -> str:
        """Which side of a cut-off a worse score lies on: `below` or `above`."""
        return "below" if self.maximize else "above"

    def better(self, score: float, than: float | None) -> bool:
        """Whether `score` beats `than` strictly (anything beats None)."""
        return than is None or self.sign * score > self.sign * than

    def reached(self, score: float, target: float) -> bool:
        """Whether `score` is at least as good as `target`."""
        return self.sign * score >= self.sign * target

    def best(self, scores: Iterable[T], key: Callable[[T], Any] | None = None) -> T:
        """The best of `scores` (by `key`, which returns the score first); `ValueError` on none."""
        pick = max if self.maximize else min
        return pick(scores, key=key) if key is not None else pick(scores)  # type: ignore[type-var]

    def worst(self, scores: Iterable[float]) -> float:
        """The worst of `scores`; `ValueError` on none."""
        return (min if self.maximize else max)(scores)

    def order_by(self, column: SQLColumnExpression[Any]) -> UnaryExpression[Any]:
        """A SQL ordering of `column`, best first."""
        return column.desc() if self.maximize else column.asc()

    def best_of(self, column: SQLColumnExpression[Any]) -> ColumnElement[Any]:
        """The SQL aggregate of `column`'s best value (MAX or MIN)."""
        return func.max(column) if self.maximize else func.min(column)

    def score(self, metrics: Mapping[str, Any]) -> float | None:
        """This metric's value in a report's named numbers; None when absent or not finite."""
        value = metrics.get(self.name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        value = float(value)
        return value if math.isfinite(value) else None

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "mode": self.mode}


def merged_metrics(owner: object, extra: Mapping[str, Any] | None) -> dict[str, Any]:
    """Every metric by name: `owner`'s built-in fields that are set, then `extra` (a
    report's, a row's or an epoch's named metrics), which wins on a clash."""
    builtin = {name: getattr(owner, name) for name in BUILTIN_METRICS}
    return {**{k: v for k, v in builtin.items() if v is not None}, **(extra or {})}


def parse_objectives(raw: Any) -> tuple[Metric, ...]:
    """A spec's `metric:` as its objectives: one for a name or `{name, mode}`, several
    (distinct names, at most `MAX_OBJECTIVES`) for a list of them.

    Raises:
        SpecError: naming the list entry (`metric[1].mode: ...`) and the rule.
    """
    if not isinstance(raw, list):
        return (parse_metric(raw),)
    if not 2 <= len(raw) <= MAX_OBJECTIVES:
        raise SpecError(
            f"metric: a list names 2 to {MAX_OBJECTIVES} objectives, each {{name, mode}} "
            f"(one objective needs no list), but got {len(raw)}"
        )
    objectives = []
    for i, item in enumerate(raw):
        try:
            objectives.append(parse_metric(item))
        except SpecError as exc:
            raise SpecError(str(exc).replace("metric", f"metric[{i}]", 1)) from None
    names = [m.name for m in objectives]
    if len(set(names)) != len(names):
        raise SpecError(f"metric: each objective once, but got {names!r}")
    return tuple(objectives)


def parse_metric(raw: Any) -> Metric:
    """A spec's `metric:` as a Metric: a known short name, or `{name, mode}`; for a list
    of objectives, the first (the primary one: `parse_objectives` reads them all).

    Raises:
        SpecError: for an unknown short name (asking for its mode), a bad name or mode.
    """
    if isinstance(raw, list):
        return parse_objectives(raw)[0]
    if isinstance(raw, str):
        check_metric_name(raw)
        if raw not in KNOWN_DIRECTIONS:
            raise SpecError(
                f"metric: say which way {raw!r} is better: metric: {{name: {raw}, mode: max}} "
                f"or mode: min (short forms: {', '.join(sorted(KNOWN_DIRECTIONS))})"
            )
        return Metric(raw, KNOWN_DIRECTIONS[raw])
    if isinstance(raw, Mapping):
        unknown = sorted(set(raw) - {"name", "mode"})
        if unknown:
            raise SpecError(f"metric.{unknown[0]}: unknown key; valid: name, mode")
        if "name" not in raw:
            raise SpecError("metric.name: required, e.g. metric: {name: val_r2, mode: max}")
        name = check_metric_name(raw["name"], where="metric.name")
        mode = raw.get("mode", KNOWN_DIRECTIONS.get(name))
        if mode is None:
            raise SpecError(
                f"metric.mode: say which way {name!r} is better: "
                f"metric: {{name: {name}, mode: max}} or mode: min"
            )
        if mode not in ("min", "max"):
            raise SpecError(f"metric.mode: must be min or max, but got {mode!r}")
        return Metric(name, mode)
    raise SpecError(
        f"metric: a name or {{name, mode}}, but got {type(raw).__name__} {raw!r}"[:200]
    )
