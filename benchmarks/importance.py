"""Why `GET /studies/{id}/importance` uses PED-ANOVA: Optuna's two parameter
importance evaluators timed on the same synthetic trials (5 parameters as a study's
space: two log-uniform, a log-integer, a uniform and a choice; the score depends mostly
on the learning rate), and the importances each finds.

    python -m benchmarks.importance [--trials 2000] [--fanova-trials 2000]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from typing import Any

import numpy as np

__all__ = ["importance_methods"]


def _study(n: int, seed: int = 0) -> Any:
    import optuna
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = np.random.default_rng(seed)
    dists = {
        "lr": FloatDistribution(1e-6, 1.0, log=True),
        "reg": FloatDistribution(1e-6, 1.0, log=True),
        "hidden": IntDistribution(16, 512, log=True),
        "dropout": FloatDistribution(0.0, 0.9),
        "update": CategoricalDistribution(["sgd", "momentum", "adam"]),
    }
    trials = []
    for _ in range(n):
        params = {
            "lr": float(10 ** rng.uniform(-6, 0)),
            "reg": float(10 ** rng.uniform(-6, 0)),
            "hidden": int(rng.integers(16, 513)),
            "dropout": float(rng.uniform(0, 0.9)),
            "update": str(rng.choice(["sgd", "momentum", "adam"])),
        }
        score = -abs(np.log10(params["lr"]) + 3) + 0.1 * params["dropout"] + rng.normal(0, 0.1)
        trials.append(optuna.trial.create_trial(params=params, distributions=dists, value=score))
    study = optuna.create_study(direction="maximize")
    study.add_trials(trials)
    return study


def importance_methods(trials: int = 2000, fanova_trials: int = 2000) -> dict[str, Any]:
    """Seconds and importances of PED-ANOVA on `trials` and fANOVA on `fanova_trials`."""
    import optuna

    results = {}
    for name, n, evaluator in [
        ("PED-ANOVA", trials, optuna.importance.PedAnovaImportanceEvaluator()),
        ("fANOVA", fanova_trials, optuna.importance.FanovaImportanceEvaluator(seed=0)),
    ]:
        study = _study(n)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = optuna.importance.get_param_importances(study, evaluator=evaluator)
        results[name] = {
            "trials": n,
            "seconds": time.perf_counter() - start,
            "importances": {k: round(float(v), 3) for k, v in found.items()},
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=2000, help="trials for PED-ANOVA")
    parser.add_argument("--fanova-trials", type=int, default=2000, help="trials for fANOVA")
    args = parser.parse_args()
    results = importance_methods(args.trials, args.fanova_trials)
    print(json.dumps(results, indent=2))
    for name, r in results.items():
        print(f"{name}: {r['seconds']:.2f} s for {r['trials']:,} trials")


if __name__ == "__main__":
    main()
