"""gridless against Ray Tune and Optuna on this machine, in one run (parts 1, 3).

1. System overhead: trivial trials per second through gridless (a real master over HTTP
   and SQLite, 2 Ray workers, a checkpoint per trial), Ray Tune (Tuner, a trivial
   function trainable, 2 CPUs; with reuse_actors=True and with its default, False,
   side by side) and Optuna (SQLite storage).
2. Search quality at an equal budget of training epochs, over seeds: gridless
   coarse-to-fine vs Optuna TPE with a median pruner vs Ray Tune random search with ASHA,
   training the same NumPy MLP on digits; once with wide ranges, once with the good
   learning rates outside the initial range.

    python -m benchmarks.peers [--trivial 200] [--tune-trivial 40] [--tune-reuse-trivial 200]
        [--seeds 5] [--budget 64] [--overhead-only]

Needs the `bench` extra: pip install -e '.[bench]' (ray[tune], optuna).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MAX_EPOCHS = 10  # per trial, for every tool

# The two search problems: the NumPy MLP on digits, plain SGD with momentum.
WIDE = {
    "learning_rate": {"log_uniform": [1e-4, 10.0]},
    "reg": {"log_uniform": [1e-7, 1e-1]},
    "hidden": {"int_log_uniform": [16, 256]},
}
# The good learning rates (0.05 to 1) lie far above this range.
SHIFTED = {**WIDE, "learning_rate": {"log_uniform": [1e-6, 1e-3]}}
PROBLEMS = {"wide ranges": WIDE, "good lr outside the range": SHIFTED}


def start_ray(cpus: int = 2) -> None:
    import ray

    if not ray.is_initialized():
        logging.getLogger("ray").setLevel(logging.ERROR)
        ray.init(
            address="local",
            num_cpus=cpus,
            object_store_memory=150 * 1024 * 1024,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )


class _Master:
    """A gridless master in this process (uvicorn on loopback, SQLite) with Ray workers."""

    def __init__(self, root: Path) -> None:
        from gridless.master.app import create_app
        from gridless.master.launcher import RayLauncher
        from gridless.master.server import BackgroundServer

        where: dict[str, str] = {}
        self.app = create_app(
            database_url=f"sqlite:///{root / 'gridless.db'}",
            store_root=root / "store",
            launcher_factory=lambda: RayLauncher(
                where["url"], str(root / "store"), python_path=[str(REPO)]
            ),
        )
        self.server = BackgroundServer(self.app)
        where["url"] = self.server.url

    def run(self, spec: dict[str, Any], workers: int = 2, timeout_s: float = 900) -> int:
        (study_id,) = self.run_all([spec], workers, timeout_s=timeout_s, poll_s=0.05)
        return study_id

    def run_all(
        self,
        specs: list[dict[str, Any]],
        workers: int = 2,
        *,
        timeout_s: float = 3600,
        poll_s: float = 0.5,
        what: str = "gridless",
    ) -> list[int]:
        """Create every study of `specs`, launch `workers`, and wait until none runs; the
        studies' ids, in the order of `specs`."""
        from gridless.common.spec import parse_spec

        service = self.app.state.service
        ids = [int(service.create_study(parse_spec(spec)).id) for spec in specs]
        manager = self.app.state.workers
        manager.launch(workers)
        pending = set(ids)
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(pending)} {what} studies did not finish in time")
            time.sleep(poll_s)
            pending = {i for i in pending if service.progress(i).state == "running"}
        manager.shutdown()
        return ids

    def __enter__(self) -> _Master:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.app.state.workers.shutdown()
        self.server.stop()
        self.app.state.engine.dispose()


# ---------------------------------------------------------------- 1. overhead


def gridless_trivial(n: int) -> float:
    """Trivial trials per second: study creation to completion, workers started inside."""
    spec = {
        "name": "trivial",
        "model": "benchmarks.trivial:build",
        "space": {"x": {"uniform": [0.0, 1.0]}},
        "early_stopping": {"rule": "none"},
        "stages": [{"trials": n, "epochs": 1}],
    }
    with tempfile.TemporaryDirectory() as root, _Master(Path(root)) as master:
        start = time.perf_counter()
        master.run(spec)
        return n / (time.perf_counter() - start)


def tune_trivial(n: int, *, reuse_actors: bool = False) -> float:
    """Trivial trials per second through a Tuner (2 CPUs, one trial per CPU).

    Args:
        reuse_actors: keep each trial's actor for the next trial; Ray Tune's default
            (False) starts an actor per trial.
    """
    from ray import tune

    def trainable(config: dict[str, Any]) -> None:
        tune.report({"score": 1.0 - abs(config["x"] - 0.3)})

    with tempfile.TemporaryDirectory() as root:
        tuner = tune.Tuner(
            trainable,
            param_space={"x": tune.uniform(0.0, 1.0)},
            tune_config=tune.TuneConfig(
                num_samples=n, metric="score", mode="max", reuse_actors=reuse_actors
            ),
            run_config=tune.RunConfig(storage_path=root, verbose=0),
        )
        start = time.perf_counter()
        tuner.fit()
        return n / (time.perf_counter() - start)


def optuna_trivial(n: int) -> float:
    """Trivial trials per second through study.optimize with SQLite storage (one process)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as root:
        study = optuna.create_study(storage=f"sqlite:///{root}/optuna.db", direction="maximize")
        start = time.perf_counter()
        study.optimize(lambda t: 1.0 - abs(t.suggest_float("x", 0.0, 1.0) - 0.3), n_trials=n)
        return n / (time.perf_counter() - start)


def overhead(trivial: int, tune_trivial_default: int, tune_trivial_reuse: int) -> dict[str, float]:
    """Trivial trials/s of every tool in this run: {"gridless", "Ray Tune (reuse_actors)",
    "Ray Tune", "Optuna"} (Ray Tune's default, reuse_actors=False, as "Ray Tune")."""
    start_ray()
    return {
        "gridless": gridless_trivial(trivial),
        "Ray Tune (reuse_actors)": tune_trivial(tune_trivial_reuse, reuse_actors=True),
        "Ray Tune": tune_trivial(tune_trivial_default),
        "Optuna": optuna_trivial(trivial),
    }


# ---------------------------------------------------------------- 2. search quality


def _stages(budget: int) -> list[dict[str, int]]:
    """Three coarse-to-fine stages spending at most `budget` epochs: 3/8 of it on short
    runs, 5/16 each on medium and full-length ones."""
    short, medium = 2, 5
    return [
        {"trials": max(2, (3 * budget) // (8 * short)), "epochs": short},
        {"trials": max(1, (5 * budget) // (16 * medium)), "epochs": medium},
        {"trials": max(1, (5 * budget) // (16 * MAX_EPOCHS)), "epochs": MAX_EPOCHS},
    ]


def gridless_search(space: dict[str, Any], seed: int, budget: int) -> tuple[float, int]:
    """Best validation accuracy and epochs trained by a gridless coarse-to-fine study."""
    from sqlalchemy import func, select

    from gridless.common.db import EpochMetricRow, session_scope

    spec = {
        "name": f"quality-{seed}",
        "model": "numpy.mlp",
        "dataset": "digits",
        "seed": seed,
        "space": space,
        "stages": _stages(budget),
    }
    with tempfile.TemporaryDirectory() as root, _Master(Path(root)) as master:
        study_id = master.run(spec)
        service = master.app.state.service
        rows, _ = service.ranked_trials(study_id, limit=1, offset=0)
        with session_scope(service.sessions) as s:
            epochs = s.scalar(select(func.count()).select_from(EpochMetricRow)) or 0
        return float(rows[0].best_score or 0.0), int(epochs)


def _train(params: dict[str, Any], seed: int) -> Callable[[], float]:
    from gridless.worker.trainer import make_trainer

    trainer = make_trainer("numpy.mlp", "digits", params, seed=seed)

    def epoch() -> float:
        accuracy = trainer.train_epoch().val_accuracy
        return float(accuracy) if accuracy is not None and math.isfinite(accuracy) else 0.0

    return epoch


def optuna_search(space: dict[str, Any], seed: int, budget: int) -> tuple[float, int]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    used = 0
    best = 0.0

    def objective(trial: optuna.Trial) -> float:
        nonlocal used, best
        params = {
            "learning_rate": trial.suggest_float(
                "learning_rate", *_bounds(space, "learning_rate"), log=True
            ),
            "reg": trial.suggest_float("reg", *_bounds(space, "reg"), log=True),
            "hidden": trial.suggest_int("hidden", *map(int, _bounds(space, "hidden")), log=True),
        }
        epoch = _train(params, seed * 1000 + trial.number)
        score = 0.0
        for step in range(1, MAX_EPOCHS + 1):
            if used >= budget:
                break
            score = max(score, epoch())
            used += 1
            best = max(best, score)
            trial.report(score, step)
            if trial.should_prune():
                raise optuna.TrialPruned
        return score

    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1),
    )
    while used < budget:
        study.optimize(objective, n_trials=1)
    return best, used


def tune_search(space: dict[str, Any], seed: int, budget: int) -> tuple[float, int]:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    def trainable(config: dict[str, Any]) -> None:
        epoch = _train(dict(config), seed)
        score = 0.0
        for _ in range(MAX_EPOCHS):
            score = max(score, epoch())
            tune.report({"val_accuracy": score})

    class Budget(tune.Stopper):
        """Stops everything once `budget` epochs were trained, over all trials."""

        def __init__(self) -> None:
            self.used = 0

        def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
            self.used += 1
            return False

        def stop_all(self) -> bool:
            return self.used >= budget

    stopper = Budget()
    param_space = {
        "learning_rate": tune.loguniform(*_bounds(space, "learning_rate")),
        "reg": tune.loguniform(*_bounds(space, "reg")),
        "hidden": tune.lograndint(
            int(_bounds(space, "hidden")[0]), int(_bounds(space, "hidden")[1]) + 1
        ),
    }
    with tempfile.TemporaryDirectory() as root:
        tuner = tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=tune.TuneConfig(
                num_samples=budget,  # more than the budget allows; the stopper ends it
                metric="val_accuracy",
                mode="max",
                scheduler=ASHAScheduler(max_t=MAX_EPOCHS, grace_period=1, reduction_factor=3),
                search_alg=BasicVariantGenerator(random_state=seed),
                max_concurrent_trials=2,
            ),
            run_config=tune.RunConfig(storage_path=root, verbose=0, stop=stopper),
        )
        results = tuner.fit()
        metrics = [results[i].metrics for i in range(len(results))]
        best = max((m.get("val_accuracy", 0.0) for m in metrics if m), default=0.0)
    return float(best), stopper.used


def _bounds(space: dict[str, Any], name: str) -> tuple[float, float]:
    (low, high) = next(iter(space[name].values()))
    return float(low), float(high)


SEARCHERS = {"gridless": gridless_search, "Optuna": optuna_search, "Ray Tune": tune_search}


def quality(seeds: int, budget: int) -> dict[str, dict[str, dict[str, Any]]]:
    """{problem: {tool: {median, low, high, epochs}}} over `seeds` seeds."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for problem, space in PROBLEMS.items():
        out[problem] = {}
        for tool, search in SEARCHERS.items():
            scores, used = [], []
            for seed in range(seeds):
                score, epochs = search(space, seed, budget)
                scores.append(score)
                used.append(epochs)
                print(
                    f"  {problem}, {tool}, seed {seed}: {score:.4f} in {epochs} epochs", flush=True
                )
            out[problem][tool] = {
                "median": statistics.median(scores),
                "low": min(scores),
                "high": max(scores),
                "epochs": statistics.median(used),
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--trivial", type=int, default=200, help="trivial trials (gridless, Optuna)"
    )
    parser.add_argument(
        "--tune-trivial", type=int, default=40, help="trivial trials (Ray Tune, its default)"
    )
    parser.add_argument(
        "--tune-reuse-trivial", type=int, default=200, help="trivial trials (reuse_actors=True)"
    )
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budget", type=int, default=64, help="training epochs per search")
    parser.add_argument("--overhead-only", action="store_true", help="skip search quality")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    out: dict[str, Any] = {
        "overhead": overhead(args.trivial, args.tune_trivial, args.tune_reuse_trivial)
    }
    if not args.overhead_only:
        out["quality"] = quality(args.seeds, args.budget)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
