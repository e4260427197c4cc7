"""One master with a large study (part 2).

- The cost of a report when a study holds 100,000 trials vs 1,000: the same 200 reports
  to one running trial, timed over HTTP, after bulk-loading the finished trials (one
  epoch row each) into the trial's stage.
- The latency of the trial list (`GET /studies/1/trials`, ranked, 50 a page) with
  100,000 trials stored: p50 and p95 over 50 requests.

Report throughput with many concurrent workers is benchmarks/report_load.py;
`bulk_load` here also fills the study of benchmarks/master_memory.py.

    python -m benchmarks.master_load [--trials 100000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from sqlalchemy import insert, select
from sqlalchemy.orm import Session, sessionmaker

from gridless.common.db import EpochMetricRow, StageRow, TrialRow, session_scope, utcnow


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))]


def bulk_load(
    sessions: sessionmaker[Session], study_id: int, trials: int, *, epochs: int = 1
) -> None:
    """`trials` finished trials of `epochs` epochs each in the study's first stage, as a
    finished study leaves them (a score per epoch, the best one last), written with
    SQLAlchemy Core in one transaction per chunk of about 20,000 epoch rows."""
    with session_scope(sessions) as s:
        stage_id = s.scalar(
            select(StageRow.id).where(StageRow.study_id == study_id).order_by(StageRow.id)
        )
    if stage_id is None:
        raise ValueError(f"study {study_id} has no stage")
    start = 1_000_000  # trial numbers far from the ones the master hands out
    chunk = max(1, 20_000 // epochs)
    for first in range(0, trials, chunk):
        now = utcnow()
        numbers = range(first, min(first + chunk, trials))
        best = {i: {"val_accuracy": (i % 1000) / 1000, "train_loss": 1.0} for i in numbers}
        rows = [
            {
                "study_id": study_id,
                "stage_id": stage_id,
                "number": start + i,
                "params": {"learning_rate": 0.01 + (i % 997) / 1000},
                "state": "completed",
                "attempt": 0,
                "epochs": epochs,
                "last_epoch": epochs,
                "best_score": best[i]["val_accuracy"],
                "best_epoch": epochs,
                "best_metrics": best[i],
                "resume_epoch": 0,
                "warnings": [],
                "created_at": now,
                "finished_at": now,
            }
            for i in numbers
        ]
        with session_scope(sessions) as s:
            ids = s.scalars(insert(TrialRow).returning(TrialRow.id), rows).all()
            s.execute(
                insert(EpochMetricRow),
                [
                    {
                        "trial_id": tid,
                        "stage_id": stage_id,
                        "attempt": 0,
                        "epoch": epoch,
                        "val_accuracy": score,
                        "train_loss": 1.0 / epoch,
                        "seconds": 0.1,
                        "metrics": {"val_accuracy": score, "train_loss": 1.0 / epoch},
                        "score": score,
                        "stats": {},
                        "created_at": now,
                    }
                    for tid, i in zip(ids, numbers, strict=True)
                    for epoch in range(1, epochs + 1)
                    for score in [best[i]["val_accuracy"] * epoch / epochs]
                ],
            )


def at_scale(trials: int, reports: int = 200, queries: int = 50) -> dict[str, float]:
    """Per-report time and trial-list latency with `trials` trials stored."""
    from gridless.common.spec import parse_spec
    from gridless.master.app import create_app
    from gridless.master.server import BackgroundServer

    spec = {
        "name": "scale",
        "space": {"learning_rate": {"log_uniform": [1e-3, 1.0]}},
        "stages": [{"trials": trials, "epochs": reports}],
    }
    with tempfile.TemporaryDirectory() as root:
        app = create_app(database_url=f"sqlite:///{root}/g.db", store_root=Path(root) / "store")
        with BackgroundServer(app) as server:
            study = app.state.service.create_study(parse_spec(spec))
            # the claimed trial is the last one
            bulk_load(app.state.service.sessions, study.id, trials - 1)
            with httpx.Client(base_url=server.url + "/api/v1", timeout=60) as api:
                job = api.post("/workers/claim", json={"worker_id": "w1"}).json()["assignment"]
                tid = job["trial_id"]
                api.post(
                    f"/trials/{tid}/start",
                    json={"worker_id": "w1", "attempt": 0, "params": {"learning_rate": 0.1}},
                )
                times = []
                for epoch in range(1, reports + 1):
                    body = {
                        "worker_id": "w1",
                        "attempt": 0,
                        "epoch": epoch,
                        "val_accuracy": 0.5,
                        "train_loss": 1.0,
                    }
                    t0 = time.perf_counter()
                    answer = api.post(f"/trials/{tid}/reports", json=body)
                    times.append(time.perf_counter() - t0)
                    answer.raise_for_status()
                lat = []
                for _ in range(queries):
                    t0 = time.perf_counter()
                    api.get(f"/studies/{study.id}/trials", params={"limit": 50}).raise_for_status()
                    lat.append(time.perf_counter() - t0)
        app.state.engine.dispose()
    return {
        "report_ms": 1000 * statistics.median(times),
        "query_p50_ms": 1000 * statistics.median(lat),
        "query_p95_ms": 1000 * _percentile(lat, 0.95),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100_000)
    args = parser.parse_args()
    out = {"small": at_scale(1_000), "large": at_scale(args.trials)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
