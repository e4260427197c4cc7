"""The `train:` functions of the search-quality benchmark: what a user of gridless's
public function API writes for a table lookup or a multi-fidelity function.

    train: benchmarks.search_objectives:tabular     # fixed: {suite: hpobench, dataset: car}
    train: benchmarks.search_objectives:hartmann    # fixed: {dims: 6, max_epochs: 9}

The workers import this module (the repository root on their path); the tables load
once a worker process.
"""

from __future__ import annotations

from typing import Any

import gridless
from benchmarks.hartmann import HartmannProblem
from benchmarks.suites import TabularProblem


def tabular(trial: gridless.Trial) -> dict[str, float]:
    """A one-shot trial: the table's value at the sampled configuration, as one epoch."""
    params: dict[str, Any] = dict(trial.params)
    problem = TabularProblem(str(params.pop("suite")), str(params.pop("dataset")))
    return {problem.metric: problem.value(params)}


def hartmann(trial: gridless.Trial) -> None:
    """Epochs as fidelity: epoch e reports the function at fidelity z = e."""
    params: dict[str, Any] = dict(trial.params)
    problem = HartmannProblem(int(params.pop("dims")), int(params.pop("max_epochs")))
    for epoch in trial.epochs():
        trial.report(epoch, value=problem.at(params, epoch))
