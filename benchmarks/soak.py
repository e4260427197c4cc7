"""Soak: N concurrent simulated workers report E epochs each to one master over loopback.

The master runs as its own process (`gridless master`), as in production; the
reporters are threads of this one. Each reporter claims a trial, registers parameters,
reports every epoch (resending a random tenth of them, as a worker that lost an
acknowledgement would), and finishes.
At the end the database must hold exactly N x E epoch rows, and no response may be a
5xx. Runs against the embedded SQLite and, with --postgres, a throwaway PostgreSQL 15
server (the one the tests use). For throughput at hundreds of workers see
benchmarks/report_load.py (an asyncio client; this one has a thread per reporter).

    python -m benchmarks.soak [--reporters 64] [--epochs 100] [--postgres]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from benchmarks.master_process import MasterProcess, count_rows
from gridless.common.db import EpochMetricRow


def reporter(url: str, name: str, epochs: int, seed: int, out: dict[str, Any]) -> None:
    """One simulated worker: claim, start, report every epoch (some twice), finish."""
    import random

    rng = random.Random(seed)
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    with httpx.Client(base_url=url + "/api/v1", timeout=60) as http:

        def post(path: str, body: dict[str, Any]) -> httpx.Response:
            start = time.perf_counter()
            response = http.post(path, json=body)
            latencies.append(time.perf_counter() - start)
            statuses[response.status_code] += 1
            return response

        while True:
            answer = post("/workers/claim", {"worker_id": name}).json()
            if answer["action"] == "train":
                break
            time.sleep(0.05)
        job = answer["assignment"]
        tid = job["trial_id"]
        post(
            f"/trials/{tid}/start",
            {"worker_id": name, "attempt": 0, "params": {"learning_rate": 0.1}},
        )
        for epoch in range(1, epochs + 1):
            report = {
                "worker_id": name,
                "attempt": 0,
                "epoch": epoch,
                "train_loss": 1.0 / epoch,
                "val_accuracy": min(1.0, epoch / epochs),
                "seconds": 0.0,
            }
            post(f"/trials/{tid}/reports", report)
            if rng.random() < 0.1:  # a lost acknowledgement: the same report again
                post(f"/trials/{tid}/reports", report)
        post(f"/trials/{tid}/finish", {"worker_id": name, "attempt": 0, "state": "completed"})
    out[name] = (statuses, latencies)


def soak(database_url: str, root: Path, reporters: int, epochs: int) -> dict[str, Any]:
    """Run the soak against a real `gridless master` process on a free loopback port."""
    results: dict[str, Any] = {}
    with MasterProcess(database_url, root) as master:
        spec = {
            "name": "soak",
            "space": {"learning_rate": {"log_uniform": [1e-3, 1.0]}},
            "early_stopping": {"rule": "none"},
            "stages": [{"trials": reporters, "epochs": epochs}],
        }
        master.create_study(spec)
        threads = [
            threading.Thread(target=reporter, args=(master.url, f"r{i}", epochs, i, results))
            for i in range(reporters)
        ]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=600)
        elapsed = time.perf_counter() - start
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    for codes, lat in results.values():
        statuses.update(codes)
        latencies.extend(lat)
    stored = count_rows(database_url, EpochMetricRow.__table__)
    latencies.sort()
    return {
        "stored": stored,
        "expected": reporters * epochs,
        "requests": sum(statuses.values()),
        "statuses": dict(sorted(statuses.items())),
        "server_errors": sum(n for code, n in statuses.items() if code >= 500),
        "seconds": elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reporters", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--postgres", action="store_true", help="also run on PostgreSQL 15")
    args = parser.parse_args()
    backends = ["sqlite"] + (["postgres"] if args.postgres else [])
    failed = False
    for backend in backends:
        root = Path(tempfile.mkdtemp(prefix="gridless-soak-"))
        server = None
        if backend == "postgres":
            from tests.postgres import Postgres

            server = Postgres()
            url = server.new_database()
        else:
            url = f"sqlite:///{root / 'gridless.db'}"
        try:
            r = soak(url, root, args.reporters, args.epochs)
        finally:
            if server is not None:
                server.stop()
        ok = r["stored"] == r["expected"] and r["server_errors"] == 0
        failed |= not ok
        print(
            f"{backend:<9} {args.reporters} reporters x {args.epochs} epochs: "
            f"stored {r['stored']} of {r['expected']}, {r['requests']} requests in "
            f"{r['seconds']:.1f} s "
            f"({r['requests'] / r['seconds']:.0f}/s), statuses {r['statuses']}, "
            f"5xx {r['server_errors']}, p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms "
            f"-> {'OK' if ok else 'FAILED'}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
