"""The master's resident memory with a large study stored (part 3).

A study of N trials (100,000) whose N - 1 finished trials are bulk-loaded with E epochs
each (10) while the master is stopped (benchmarks.master_load.bulk_load); a fresh
`gridless master` process then serves it: the last trial is claimed and reports its E
epochs over HTTP (N x E epoch rows in all: 1,000,000), and the dashboard's and the
CLI's reads run a few times each (study list and detail, trial list pages, stages,
flags, warnings, checkpoints, trial detail with its metrics). The figure is the
master's VmRSS afterwards (and VmHWM, its peak), from /proc/PID/status.

    python -m benchmarks.master_memory [--quick] [--trials 100000] [--epochs 10] [--postgres]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import httpx

from benchmarks.master_load import bulk_load
from benchmarks.master_process import MasterProcess, count_rows, database
from benchmarks.simulated_workers import Wire, percentile
from gridless.common.db import EpochMetricRow, TrialRow, make_engine, make_session_factory

__all__ = ["master_memory"]


def _spec(trials: int, epochs: int) -> dict[str, Any]:
    return {
        "name": "memory",
        "space": {"learning_rate": {"log_uniform": [1e-3, 1.0]}},
        "early_stopping": {"rule": "none"},
        "stages": [{"trials": trials, "epochs": epochs}],
    }


def _report_last_trial(api: httpx.Client, epochs: int) -> int:
    """Claim the one trial left, report its epochs and finish it; its trial id."""
    answer = api.post(Wire.claim("mem").path, json=Wire.claim("mem").body).json()
    if answer["action"] != "train":
        raise RuntimeError(f"the master had no trial to hand out: {answer}")
    tid = int(answer["assignment"]["trial_id"])
    for request in [
        Wire.start(tid, "mem"),
        *Wire.report_requests(tid, "mem", range(1, epochs + 1), epochs),
        Wire.finish(tid, "mem"),
    ]:
        api.post(request.path, json=request.body).raise_for_status()
    return tid


def _reads(study: int, tid: int, number: int) -> dict[str, str]:
    """The reads the dashboard's pages and the CLI make, by name."""
    return {
        "studies": "/studies?limit=1000",
        "study detail": f"/studies/{study}",
        "trial list": f"/studies/{study}/trials?limit=50",
        "trial list, page 100": f"/studies/{study}/trials?limit=50&offset=5000",
        "dashboard trial list": f"/studies/{study}/trials?limit=1000",
        "stages": f"/studies/{study}/stages",
        "flags": f"/studies/{study}/flags",
        "warnings": f"/studies/{study}/warnings",
        "checkpoints": f"/studies/{study}/checkpoints?limit=1000",
        "trial detail": f"/studies/{study}/trials/{number}",
        "trial by id": f"/trials/{tid}",
        "trial metrics": f"/trials/{tid}/metrics",
    }


def master_memory(
    trials: int = 100_000, epochs: int = 10, *, backend: str = "sqlite", rounds: int = 5
) -> dict[str, Any]:
    """The master's RSS serving a study of `trials` trials x `epochs` epoch rows.

    Returns:
        {"rss_mb", "peak_mb", "rss_started_mb", "rss_empty_mb", "trials", "epoch_rows",
        "load_s", "queries": {name: p50 ms}}.
    """
    if trials < 2 or epochs < 1:
        raise ValueError(f"trials >= 2 and epochs >= 1 must hold, got {trials=}, {epochs=}")
    with database(backend) as (url, root):
        with MasterProcess(url, root) as master:
            study = master.create_study(_spec(trials, epochs))
            empty = master.rss_mb()
        engine = make_engine(url)
        start = time.perf_counter()
        bulk_load(make_session_factory(engine), study, trials - 1, epochs=epochs)
        load_s = time.perf_counter() - start
        engine.dispose()
        timings: dict[str, list[float]] = {}
        with MasterProcess(url, root) as master:
            started = master.rss_mb()
            with httpx.Client(base_url=master.url + "/api/v1", timeout=300) as api:
                tid = _report_last_trial(api, epochs)
                number = int(api.get(f"/trials/{tid}").json()["number"])
                for _ in range(rounds):
                    for name, path in _reads(study, tid, number).items():
                        sent = time.perf_counter()
                        api.get(path).raise_for_status()
                        timings.setdefault(name, []).append(time.perf_counter() - sent)
            after = master.rss_mb()
        rows = count_rows(url, EpochMetricRow.__table__)
        stored_trials = count_rows(url, TrialRow.__table__)
    return {
        "backend": backend,
        "trials": stored_trials,
        "epoch_rows": rows,
        "load_s": load_s,
        "rss_empty_mb": empty["rss"],
        "rss_started_mb": started["rss"],
        "rss_mb": after["rss"],
        "peak_mb": after["peak"],
        "queries": {k: 1000 * percentile(v, 0.5) for k, v in timings.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 trials")
    parser.add_argument("--trials", type=int, help="trials stored [100,000; quick: 10,000]")
    parser.add_argument("--epochs", type=int, default=10, help="epoch rows per trial")
    parser.add_argument("--rounds", type=int, default=5, help="times each read runs")
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL 15, not SQLite")
    args = parser.parse_args()
    backend = "postgres" if args.postgres else "sqlite"
    trials = args.trials or (10_000 if args.quick else 100_000)
    r = master_memory(trials, args.epochs, backend=backend, rounds=args.rounds)
    print(json.dumps(r, indent=2))
    print(
        f"{backend}: {r['trials']:,} trials, {r['epoch_rows']:,} epoch rows (loaded in "
        f"{r['load_s']:.0f} s): master RSS {r['rss_mb']:.0f} MB after the reads "
        f"(peak {r['peak_mb']:.0f}, {r['rss_started_mb']:.0f} at start, "
        f"{r['rss_empty_mb']:.0f} empty) -> target < 500 MB: "
        f"{'met' if r['rss_mb'] < 500 else 'missed'}"
    )


if __name__ == "__main__":
    main()
