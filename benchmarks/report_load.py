"""One master, many workers: reports/s, p50/p99 and dashboard latency.

Report throughput and latency with N concurrent simulated workers, and the dashboard's
query latency while they report:

- A `gridless master` process on a fresh SQLite or PostgreSQL 15 database (the tests'
  throwaway server, fsync off) serves one study of N trials; N simulated workers
  (benchmarks/simulated_workers.py) claim them and report E epochs each, all at once.
  Reports per second and p50/p99 cover the reporting phase only. Afterwards the
  database must hold exactly the N x E reports the workers saw acknowledged, with no
  5xx on the way.
- The client's own ceiling: the same workers against a null HTTP server; and the
  master's HTTP floor: `GET /api/v1/health` (no database) at the same concurrency. A
  throughput near the ceiling was limited by the client, not the master.
- With --dashboard, another process polls what the dashboard shows while the workers
  report: the trial list (`GET /studies/1/trials?limit=50`) and the study detail
  (`GET /studies/1`), one after the other; p50/p95 of each. --history N stores N
  finished trials in the study first, for a dashboard that reads a large study.

    python -m benchmarks.report_load [--quick] [--workers 64 256] [--epochs E]
        [--backend sqlite postgres] [--dashboard] [--history 0] [--ceiling] [--floor 0]
        [--processes 1] [--client aiohttp] [--batch 1] [--resend 0] [--think-ms 0]
        [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.master_load import bulk_load
from benchmarks.master_process import (
    BACKENDS,
    MasterProcess,
    count_rows,
    database,
    postgres_available,
)
from benchmarks.simulated_workers import (
    CLIENTS,
    client_ceiling,
    closed_loop,
    drive,
    percentile,
)
from gridless.common.db import EpochMetricRow, make_engine, make_session_factory

__all__ = ["DASHBOARD_QUERIES", "DashboardPoller", "epochs_for", "report_throughput"]

# What the dashboard's study page shows, as the design's targets name it.
DASHBOARD_QUERIES = {
    "trial list": "/api/v1/studies/{study}/trials?limit=50",
    "study detail": "/api/v1/studies/{study}",
}


def epochs_for(workers: int, quick: bool, *, reports: int = 0) -> int:
    """Reports per simulated worker for about `reports` in all (default 2,000 quick,
    8,000 otherwise): a run of seconds at today's rates, long enough for a steady one."""
    return max(3, (reports or (2_000 if quick else 8_000)) // workers)


def _spec(workers: int, epochs: int) -> dict[str, Any]:
    return {
        "name": "report-load",
        "space": {"learning_rate": {"log_uniform": [1e-3, 1.0]}},
        "early_stopping": {"rule": "none"},
        "stages": [{"trials": workers, "epochs": epochs}],
    }


def _poll(url: str, study: int, go: Any, done: Any, pause_s: float, results: Any) -> None:
    """The poller process: the dashboard's queries one after the other until `done`."""
    seen: dict[str, dict[str, Any]] = {k: {"ms": [], "statuses": {}} for k in DASHBOARD_QUERIES}
    go.wait()
    with httpx.Client(base_url=url, timeout=120) as http:
        while True:  # one round at least, however short the run
            for name, path in DASHBOARD_QUERIES.items():
                start = time.perf_counter()
                code = http.get(path.format(study=study)).status_code
                ms = 1000 * (time.perf_counter() - start)
                entry = seen[name]
                entry["statuses"][str(code)] = entry["statuses"].get(str(code), 0) + 1
                if code == 200:
                    entry["ms"].append(ms)
            if done.wait(pause_s):
                break
    results.put(seen)


class DashboardPoller:
    """A process that polls the dashboard's queries from `start()` until `stop()`, apart
    from the simulated workers' event loop so that its timings are the master's."""

    def __init__(self, url: str, study: int, *, pause_s: float = 0.05) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._go, self._done, self._results = ctx.Event(), ctx.Event(), ctx.Queue()
        self._process = ctx.Process(
            target=_poll,
            args=(url, study, self._go, self._done, pause_s, self._results),
            daemon=True,
        )
        self._process.start()

    def start(self) -> None:
        self._go.set()

    def stop(self) -> dict[str, dict[str, Any]]:
        """{query: {p50_ms, p95_ms, answers, statuses}} over what it saw."""
        self._go.set()
        self._done.set()
        seen: dict[str, dict[str, Any]] = self._results.get(timeout=300)
        self._process.join(timeout=30)
        return {
            name: {
                "p50_ms": percentile(entry["ms"], 0.50),
                "p95_ms": percentile(entry["ms"], 0.95),
                "answers": len(entry["ms"]),
                "statuses": entry["statuses"],
            }
            for name, entry in seen.items()
        }


def report_throughput(
    backend: str,
    workers: int,
    epochs: int,
    *,
    dashboard: bool = False,
    history: int = 0,
    floor_requests: int = 0,
    batch: int = 1,
    resend: float = 0.0,
    think_s: float = 0.0,
    processes: int = 1,
    client: str = "aiohttp",
) -> dict[str, Any]:
    """`workers` simulated workers report `epochs` epochs each to a fresh master.

    Args:
        backend: "sqlite" or "postgres".
        dashboard: also poll the dashboard's queries while they report.
        history: finished trials (one epoch row each) bulk-loaded into the study first,
            so that the dashboard's queries read a large study (a stage holds at most
            100,000 trials, workers included).
        floor_requests: first send this many `GET /api/v1/health` at the same
            concurrency (the master's HTTP floor); 0 skips it.

    Returns:
        The workers' summary (reports_per_s, p50_ms, p99_ms, statuses, server_errors,
        ...) with `stored` (epoch rows in the database), `expected`, `once` (every
        acknowledged report stored exactly once, no 5xx), the master's RSS in MB,
        `floor` and `dashboard` when asked for, `master_errors` from its log.
    """
    with database(backend) as (url, root):
        with MasterProcess(url, root) as master:
            floor = (
                closed_loop(master.url, "/api/v1/health", workers, floor_requests, client=client)
                if floor_requests
                else None
            )
            study = master.create_study(_spec(workers + history, epochs))
            if history:
                engine = make_engine(url)
                bulk_load(make_session_factory(engine), study, history)
                engine.dispose()
            poller = DashboardPoller(master.url, study) if dashboard else None
            try:
                tally = drive(
                    master.url,
                    workers,
                    epochs,
                    batch=batch,
                    resend=resend,
                    think_s=think_s,
                    processes=processes,
                    client=client,
                    on_reporting=poller.start if poller else lambda: None,
                )
            finally:
                polled = poller.stop() if poller else None
            rss = master.rss_mb()
            errors = master.logged_errors()
        stored = count_rows(url, EpochMetricRow.__table__)
    out = tally.summary()
    out.update(
        backend=backend,
        workers=workers,
        epochs=epochs,
        history=history,
        stored=stored - history,
        expected=workers * epochs,
        once=stored - history == tally.reports == workers * epochs and tally.server_errors == 0,
        master_rss_mb=rss,
        master_errors=errors,
    )
    if floor is not None:
        out["floor"] = floor
    if polled is not None:
        out["dashboard"] = polled
    return out


def describe(r: dict[str, Any]) -> str:
    """One line for a run of `report_throughput`."""
    line = (
        f"{r['backend']:<8} {r['workers']:>4} workers x {r['epochs']} epochs: "
        f"{r['reports_per_s']:,.0f} reports/s, p50 {r['p50_ms']:.1f} ms, "
        f"p99 {r['p99_ms']:.1f} ms; stored {r['stored']} of {r['expected']} "
        f"(acknowledged {r['reports']}), statuses {r['statuses']}, 5xx {r['server_errors']}"
        f" -> {'OK' if r['once'] else 'FAILED'}"
    )
    if r["problems"]:
        line += f"\n         problems: {r['problems']}"
    if "floor" in r:
        f = r["floor"]
        line += (
            f"\n         GET /health at {r['workers']} connections: "
            f"{f['requests_per_s']:,.0f}/s, p50 {f['p50_ms']:.1f} ms, p99 {f['p99_ms']:.1f} ms"
        )
    for name, q in r.get("dashboard", {}).items():
        line += (
            f"\n         {name} while reporting: p50 {q['p50_ms']:.0f} ms, "
            f"p95 {q['p95_ms']:.0f} ms over {q['answers']} answers, statuses {q['statuses']}"
        )
    return line


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--quick", action="store_true", help="about 2,000 reports a run")
    parser.add_argument(
        "--epochs", type=int, help="reports per worker [8,000 (quick: 2,000) / workers]"
    )
    parser.add_argument("--backend", nargs="+", choices=BACKENDS, default=["sqlite"])
    parser.add_argument("--dashboard", action="store_true", help="poll the dashboard too")
    parser.add_argument("--history", type=int, default=0, help="finished trials stored first")
    parser.add_argument("--ceiling", action="store_true", help="measure the client's ceiling")
    parser.add_argument("--floor", type=int, default=0, help="GET /health requests first")
    parser.add_argument("--processes", type=int, default=1, help="client processes")
    parser.add_argument("--client", choices=CLIENTS, default="aiohttp")
    parser.add_argument("--batch", type=int, default=1, help="epochs handed to the wire at once")
    parser.add_argument("--resend", type=float, default=0.0, help="share of reports sent twice")
    parser.add_argument("--think-ms", type=float, default=0.0, help="pause before each batch")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    args = parser.parse_args()
    if "postgres" in args.backend and not postgres_available():
        parser.error("--backend postgres needs PostgreSQL 15 and psycopg (tests/postgres.py)")
    out: dict[str, Any] = {"runs": []}
    failed = False
    if args.ceiling:
        for workers in args.workers:
            # the null server answers thousands a second: more reports for a steady rate
            epochs = args.epochs or epochs_for(workers, args.quick, reports=20_000)
            c = client_ceiling(workers, epochs, processes=args.processes, client=args.client)
            out.setdefault("ceiling", {})[str(workers)] = c
            print(
                f"client ceiling (null server), {workers} workers: "
                f"{c['reports_per_s']:,.0f} reports/s, p50 {c['p50_ms']:.1f} ms, "
                f"p99 {c['p99_ms']:.1f} ms",
                flush=True,
            )
    for backend in args.backend:
        for workers in args.workers:
            r = report_throughput(
                backend,
                workers,
                args.epochs or epochs_for(workers, args.quick),
                dashboard=args.dashboard,
                history=args.history,
                floor_requests=args.floor,
                batch=args.batch,
                resend=args.resend,
                think_s=args.think_ms / 1000,
                processes=args.processes,
                client=args.client,
            )
            out["runs"].append(r)
            failed |= not r["once"]
            print(describe(r), flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2), encoding="utf-8")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
