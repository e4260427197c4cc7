"""The peers of the search-quality benchmark (benchmarks/search_quality.py), run on the
same objectives and ranges as gridless: Optuna's random search and TPE with one trial an
evaluation at full fidelity, and Ray Tune's ASHA with epochs as the fidelity."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from typing import Any

from benchmarks.hartmann import HartmannProblem
from benchmarks.suites import TabularProblem

Problem = TabularProblem | HartmannProblem
BUDGETS = (30, 100)
WORKERS = 2  # Ray Tune's concurrent trials, as gridless's workers


# ---------------------------------------------------------------- Optuna


def _suggest(trial: Any, space: dict[str, dict[str, list[Any]]]) -> dict[str, Any]:
    """The same ranges as the gridless spec, through Optuna's suggest API."""
    params: dict[str, Any] = {}
    for name, dist in space.items():
        ((kind, args),) = dist.items()
        if kind == "choice":
            params[name] = trial.suggest_categorical(name, args)
        elif kind in ("int", "int_log_uniform"):
            params[name] = trial.suggest_int(name, args[0], args[1], log=kind != "int")
        else:
            params[name] = trial.suggest_float(name, args[0], args[1], log=kind == "log_uniform")
    return params


def optuna_regrets(
    problem: Problem, sampler: str, repeat: int, budgets: Sequence[int] = BUDGETS
) -> dict[int, float]:
    """{budget: regret of the best of the first `budget` trials} of one Optuna study."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    make = {"random": optuna.samplers.RandomSampler, "TPE": optuna.samplers.TPESampler}
    study = optuna.create_study(
        direction="maximize" if problem.mode == "max" else "minimize",
        sampler=make[sampler](seed=repeat),
    )
    space = problem.space()
    study.optimize(lambda t: problem.value(_suggest(t, space)), n_trials=max(budgets))
    values = [t.value for t in study.trials]
    pick: Callable[[Sequence[float]], float] = max if problem.mode == "max" else min
    return {b: problem.regret(pick(values[:b])) for b in budgets}


# ---------------------------------------------------------------- Ray Tune ASHA


def asha_regrets(
    problem: HartmannProblem, repeat: int, budgets: Sequence[int] = BUDGETS
) -> dict[int, float]:
    """{budget: regret of the incumbent once ASHA had trained budget x max_epochs epochs}."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from benchmarks.peers import start_ray

    start_ray(WORKERS)
    full = problem.max_epochs
    limit = max(budgets) * full

    def trainable(config: dict[str, Any]) -> None:
        for epoch in range(1, full + 1):
            tune.report({"value": problem.at(config, epoch), **config})

    class Log(tune.Stopper):
        """Every result in arrival order; stops everything once `limit` epochs ran."""

        def __init__(self) -> None:
            self.results: list[tuple[float, dict[str, float]]] = []

        def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
            x = {k: float(result[k]) for k in problem.space()}
            self.results.append((float(result["value"]), x))
            return False

        def stop_all(self) -> bool:
            return len(self.results) >= limit

    log = Log()
    space = {name: tune.uniform(0.0, 1.0) for name in problem.space()}
    with tempfile.TemporaryDirectory() as root:
        tuner = tune.Tuner(
            trainable,
            param_space=space,
            tune_config=tune.TuneConfig(
                num_samples=limit,  # more than the budget allows; the stopper ends it
                metric="value",
                mode="min",
                scheduler=ASHAScheduler(max_t=full, grace_period=1, reduction_factor=3),
                search_alg=BasicVariantGenerator(random_state=repeat),
                max_concurrent_trials=WORKERS,
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(storage_path=root, verbose=0, stop=log),
        )
        tuner.fit()
    out = {}
    for b in budgets:
        seen = log.results[: b * full]
        best = min(seen, key=lambda r: r[0])
        out[b] = problem.regret(problem.value(best[1]))
    return out
