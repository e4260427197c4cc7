"""The analysis reads on a large idle study: study detail, a trial page, the
plot points, parameter importance and the CSV/JSON export.

A study of N trials (100,000) is bulk-loaded directly into the database while the
master is stopped (benchmarks.master_load.bulk_load: E epochs each, finished, scored);
every 10th trial then gets a babysitting warning, so the study detail's warning counts
have something to count. A fresh `gridless master` process serves it and each read runs
a few times over HTTP; the figures are p50 and max in milliseconds (the export: until
the last byte), and the export's size.

    python -m benchmarks.analysis_api [--trials 100000] [--epochs 2] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import httpx
from sqlalchemy import update

from benchmarks.master_load import bulk_load
from benchmarks.master_process import MasterProcess, database
from benchmarks.simulated_workers import percentile
from gridless.common.db import TrialRow, make_engine, make_session_factory, session_scope

__all__ = ["analysis_reads"]

WARNING = [{"code": "loss_rising", "message": "the loss rose", "epoch": 1}]


def _spec(trials: int, epochs: int) -> dict[str, Any]:
    return {
        "name": "analysis",
        "space": {"learning_rate": {"log_uniform": [1e-3, 1.0]}},
        "early_stopping": {"rule": "none"},
        "stages": [{"trials": trials, "epochs": epochs}],
    }


def _reads(study: int) -> dict[str, str]:
    return {
        "study detail": f"/studies/{study}",
        "trial page (50)": f"/studies/{study}/trials?limit=50",
        "trial page (1000)": f"/studies/{study}/trials?limit=1000",
        "points": f"/studies/{study}/points",
        "importance": f"/studies/{study}/importance",
        "export csv": f"/studies/{study}/trials?format=csv",
        "export json": f"/studies/{study}/trials?format=json",
    }


def analysis_reads(
    trials: int = 100_000, epochs: int = 2, *, rounds: int = 5, backend: str = "sqlite"
) -> dict[str, Any]:
    """p50/max ms of each read on an idle study of `trials` trials.

    Returns:
        {"trials", "epochs", "load_s", "reads": {name: {"p50_ms", "max_ms", "status",
        "bytes"}}}; a read the master does not serve has its status (404) and no times.
    """
    with database(backend) as (url, root):
        with MasterProcess(url, root) as master:
            study = master.create_study(_spec(trials, epochs))
        engine = make_engine(url)
        sessions = make_session_factory(engine)
        start = time.perf_counter()
        bulk_load(sessions, study, trials, epochs=epochs)
        with session_scope(sessions) as s:
            s.execute(
                update(TrialRow)
                .where(TrialRow.study_id == study, TrialRow.number % 10 == 0)
                .values(warnings=WARNING)
            )
        load_s = time.perf_counter() - start
        engine.dispose()
        results: dict[str, dict[str, Any]] = {}
        with (
            MasterProcess(url, root) as master,
            httpx.Client(base_url=master.url + "/api/v1", timeout=600) as api,
        ):
            for name, path in _reads(study).items():
                times: list[float] = []
                status, size = 0, 0
                for _ in range(rounds):
                    sent = time.perf_counter()
                    answer = api.get(path)
                    elapsed = time.perf_counter() - sent
                    status, size = answer.status_code, len(answer.content)
                    if status != 200:
                        break
                    times.append(elapsed)
                results[name] = {"status": status, "bytes": size}
                if times:
                    results[name]["p50_ms"] = 1000 * percentile(times, 0.5)
                    results[name]["max_ms"] = 1000 * max(times)
    return {"trials": trials, "epochs": epochs, "load_s": load_s, "reads": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100_000, help="trials stored")
    parser.add_argument("--epochs", type=int, default=2, help="epoch rows per trial")
    parser.add_argument("--rounds", type=int, default=5, help="times each read runs")
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL 15, not SQLite")
    args = parser.parse_args()
    backend = "postgres" if args.postgres else "sqlite"
    r = analysis_reads(args.trials, args.epochs, rounds=args.rounds, backend=backend)
    print(json.dumps(r, indent=2))
    for name, read in r["reads"].items():
        if "p50_ms" in read:
            print(
                f"{name}: p50 {read['p50_ms']:.0f} ms, max {read['max_ms']:.0f} ms, "
                f"{read['bytes']:,} bytes"
            )
        else:
            print(f"{name}: {read['status']}")


if __name__ == "__main__":
    main()
