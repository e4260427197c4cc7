"""A warm start against a cold one: the median score of a TPE study's first
10 trials when it starts from a finished study's ranges and trials, against the same
study started cold from the wide ranges, over seeds.

    python -m benchmarks.warm_start [--seeds 5] [--trials 10]

Each seed: a finished random-search study of the digits MLP (wide ranges, 30 trials x 2
epochs, two stages), then two new TPE studies of `--trials` trials x 2 epochs: one with
`warm_start: {study: <it>}`, one without. One in-process master (SQLite), one worker.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path
from typing import Any

WIDE = {
    "learning_rate": {"log_uniform": [1e-6, 10.0]},
    "reg": {"log_uniform": [1e-6, 10.0]},
    "hidden": {"int_log_uniform": [16, 256]},
}


def _first_scores(service: Any, study_id: int, n: int) -> list[float]:
    rows, _ = service.list_trials(study_id, limit=n, offset=0, sort="number")
    return [t.best_score if t.best_score is not None else 0.0 for t in rows[:n]]


def compare(seeds: int = 5, trials: int = 10) -> list[dict[str, float]]:
    """Per seed, the median of the first `trials` scores, warm and cold."""
    from gridless.common.spec import parse_spec
    from gridless.master.app import create_app
    from gridless.master.server import BackgroundServer
    from gridless.worker.loop import run_worker

    results = []
    for seed in range(seeds):
        with tempfile.TemporaryDirectory() as root:
            app = create_app(database_url=f"sqlite:///{root}/g.db", store_root=Path(root) / "s")
            service = app.state.service
            with BackgroundServer(app) as server:
                base = {"space": WIDE, "seed": seed, "early_stopping": {"rule": "none"}}
                old = service.create_study(
                    parse_spec(
                        {
                            **base,
                            "name": "old",
                            "stages": [{"trials": 20, "epochs": 2}, {"trials": 10, "epochs": 2}],
                        }
                    )
                )
                run_worker(server.url, Path(root) / "s", "w")
                new = {**base, "sampler": "tpe", "stages": [{"trials": trials, "epochs": 2}]}
                warm = service.create_study(
                    parse_spec({**new, "name": "warm", "warm_start": {"study": old.id}})
                )
                run_worker(server.url, Path(root) / "s", "w")
                cold = service.create_study(parse_spec({**new, "name": "cold"}))
                run_worker(server.url, Path(root) / "s", "w")
                results.append(
                    {
                        "warm": statistics.median(_first_scores(service, warm.id, trials)),
                        "cold": statistics.median(_first_scores(service, cold.id, trials)),
                    }
                )
            app.state.engine.dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=10)
    args = parser.parse_args()
    results = compare(args.seeds, args.trials)
    print(f"median val_accuracy of the first {args.trials} trials (TPE), digits MLP")
    print(f"{'seed':>4} {'warm':>7} {'cold':>7}")
    for seed, r in enumerate(results):
        print(f"{seed:>4} {r['warm']:7.4f} {r['cold']:7.4f}")
    warm = statistics.median(r["warm"] for r in results)
    cold = statistics.median(r["cold"] for r in results)
    better = sum(r["warm"] > r["cold"] for r in results)
    print(
        f"median over seeds: warm {warm:.4f}, cold {cold:.4f}; warm better in {better} of "
        f"{len(results)} seeds"
    )


if __name__ == "__main__":
    main()
