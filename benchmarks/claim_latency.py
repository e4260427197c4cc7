"""Claim latency with the default sampler (`sampler: tpe`) on a study that holds 10,000
finished trials: p50 and p99 of the master's claim call, and what the model costs.

    python -m benchmarks.claim_latency [--trials 10000] [--claims 200] [--workers 2]
        [--trial-s 1.0] [--sampler both|tpe|random]

The study (4 parameters: two log ranges, an integer and a choice) gets `--trials`
finished, scored trials written straight into its SQLite file with SQLAlchemy Core; then
a fresh master (`create_app`: its protocol, writer and sampler, in this process, on that
file) serves `--workers` simulated workers that claim, start, report and finish one
trial each in turn, each trial taking `--trial-s` seconds (the worker's training time,
during which the sampler's preparer makes the next suggestion). A claim is timed from
the call to its committed answer (the writer's transaction included, as an HTTP handler
waits for it). Printed: p50/p99/max over the claims that got a trial, the number of
claims that were told to wait (no suggestion ready yet), the part of each claim spent in
the sampler (syncing what finished, popping the prepared suggestion), the first claim
(which reads the 10,000 trials into the model), and the preparer's seconds per
suggestion; then the same with `sampler: random` as the baseline (by default).
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import insert, update

__all__ = ["claim_latency"]

SPACE = {
    "learning_rate": {"log_uniform": [1e-5, 1.0]},
    "reg": {"log_uniform": [1e-6, 1e-1]},
    "hidden": {"int_log_uniform": [16, 1024]},
    "update": {"choice": ["sgd", "momentum", "adam"]},
}


def _score(params: dict[str, Any]) -> float:
    lr, reg = math.log10(params["learning_rate"]), math.log10(params["reg"])
    bonus = {"sgd": 0.0, "momentum": 0.05, "adam": 0.1}[params["update"]]
    return (1.0 / (1.0 + (lr + 2) ** 2 + 0.3 * (reg + 4) ** 2) + bonus) / 1.1


def _bulk_trials(url: str, study_id: int, trials: int) -> None:
    """`trials` finished trials numbered 0..trials-1 in the study's stage, one
    transaction per 5,000 (SQLAlchemy Core)."""
    import numpy as np

    from gridless.common.db import (
        StageRow,
        StudyRow,
        TrialRow,
        make_engine,
        make_session_factory,
        session_scope,
        utcnow,
    )
    from gridless.common.space import parse_space, sample_params

    engine = make_engine(url)
    sessions = make_session_factory(engine)
    space = parse_space(SPACE)
    rng = np.random.default_rng(0)
    with session_scope(sessions) as s:
        stage_id = s.query(StageRow.id).filter(StageRow.study_id == study_id).scalar()
    for first in range(0, trials, 5000):
        now = utcnow()
        rows = []
        for number in range(first, min(first + 5000, trials)):
            params = dict(sample_params(space, rng))
            score = _score(params)
            rows.append(
                {
                    "study_id": study_id,
                    "stage_id": stage_id,
                    "number": number,
                    "params": params,
                    "state": "completed",
                    "attempt": 0,
                    "epochs": 1,
                    "last_epoch": 1,
                    "best_score": score,
                    "best_epoch": 1,
                    "best_metrics": {"val_accuracy": score},
                    "resume_epoch": 0,
                    "warnings": [],
                    "created_at": now,
                    "finished_at": now,
                }
            )
        with session_scope(sessions) as s:
            s.execute(insert(TrialRow), rows)
    with session_scope(sessions) as s:
        s.execute(update(StudyRow).where(StudyRow.id == study_id).values(next_trial_number=trials))
    engine.dispose()


def _sample(job: Any) -> dict[str, Any]:
    """What a worker samples itself (sampler: random, the baseline)."""
    from gridless.common.space import parse_space, sample_params
    from gridless.common.spec import trial_rng

    return dict(sample_params(parse_space(job.space), trial_rng(job.seed, job.trial_number)))


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def claim_latency(
    trials: int = 10_000,
    claims: int = 200,
    *,
    workers: int = 2,
    trial_s: float = 0.2,
    sampler_name: str = "tpe",
) -> dict[str, Any]:
    """Claim latencies (ms) with `trials` finished trials stored."""
    from gridless.common.messages import EpochReport, FinishRequest, StartRequest
    from gridless.common.spec import parse_spec
    from gridless.master.app import create_app

    spec = {
        "name": "latency",
        "train": "benchmarks.search_objectives:tabular",
        "space": SPACE,
        "early_stopping": {"rule": "none"},
        "sampler": sampler_name,
        "stages": [{"trials": trials + claims + workers, "epochs": 1}],
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "store").mkdir()
        url = f"sqlite:///{root / 'latency.db'}"
        app = create_app(database_url=url, store_root=root / "store")
        study_id = int(app.state.service.create_study(parse_spec(spec)).id)
        app.state.protocol.close()
        app.state.engine.dispose()
        t0 = time.perf_counter()
        _bulk_trials(url, study_id, trials)
        load_s = time.perf_counter() - t0

        app = create_app(database_url=url, store_root=root / "store")  # a fresh master
        protocol = app.state.protocol
        sampler = protocol.sampler
        taken: list[float] = []
        waits = 0
        first_ms: float | None = None
        out: dict[str, tuple[int, int, dict[str, Any], float]] = {}  # worker -> trial
        try:
            while len(taken) < claims:
                for w in range(workers):
                    worker = f"w{w}"
                    if worker in out:
                        continue
                    sent = time.perf_counter()
                    answer = protocol.claim(worker)
                    elapsed = 1000 * (time.perf_counter() - sent)
                    if first_ms is None:
                        first_ms = elapsed
                    job = answer.assignment
                    if job is None:
                        waits += 1
                        time.sleep(answer.retry_after_s)
                        continue
                    taken.append(elapsed)
                    params = dict(job.params or {}) or _sample(job)
                    protocol.start_trial(
                        job.trial_id, StartRequest(worker_id=worker, attempt=0, params=params)
                    )
                    out[worker] = (job.trial_id, 0, params, time.perf_counter() + trial_s)
                if not out:
                    continue  # every worker was told to wait
                worker, (tid, attempt, params, done_at) = min(out.items(), key=lambda kv: kv[1][3])
                time.sleep(max(0.0, done_at - time.perf_counter()))
                del out[worker]
                report = EpochReport(
                    worker_id=worker, attempt=attempt, epoch=1, val_accuracy=_score(params)
                )
                protocol.record_report(tid, report)
                protocol.finish_trial(
                    tid, FinishRequest(worker_id=worker, attempt=attempt, state="completed")
                )
            inside = [1000 * x for x in list(sampler.claim_seconds)[1:]]  # the first loads
            state = sampler.states.get(study_id)
            view = state.view if state is not None else None
            observed = view.observed if view is not None else 0
        finally:
            protocol.close()
            app.state.engine.dispose()
    return {
        "trials": trials,
        "claims": len(taken),
        "p50_ms": _percentile(taken, 0.5),
        "p99_ms": _percentile(taken, 0.99),
        "max_ms": max(taken),
        "waits": waits,
        "first_claim_ms": first_ms,
        "model_observations": observed,
        "builds": state.builds if state is not None else 0,
        "ask_s": state.ask_seconds / max(1, state.asks) if state is not None else 0.0,
        "sampler": sampler_name,
        "in_sampler_p50_ms": _percentile(inside, 0.5) if inside else 0.0,
        "in_sampler_p99_ms": _percentile(inside, 0.99) if inside else 0.0,
        "load_s": load_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--claims", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--trial-s", type=float, default=1.0)
    parser.add_argument(
        "--sampler", default="both", help="tpe (the default), random, or both (tpe, then random)"
    )
    args = parser.parse_args()
    import logging
    import warnings

    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    names = ["tpe", "random"] if args.sampler == "both" else [args.sampler]
    for name in names:
        r = claim_latency(
            args.trials, args.claims, workers=args.workers, trial_s=args.trial_s, sampler_name=name
        )
        line = (
            f"sampler {name}, {r['trials']:,} finished trials: claim p50 {r['p50_ms']:.1f} ms, "
            f"p99 {r['p99_ms']:.1f} ms, max {r['max_ms']:.1f} ms over {r['claims']} claims "
            f"({r['waits']} answered wait)"
        )
        if name != "random":
            line += (
                f"; inside the sampler p50 {r['in_sampler_p50_ms']:.1f} ms, p99 "
                f"{r['in_sampler_p99_ms']:.1f} ms; first claim (reads the trials) "
                f"{r['first_claim_ms']:.0f} ms; the model holds {r['model_observations']} "
                f"observations, {r['ask_s'] * 1000:.0f} ms a suggestion in the background, "
                f"{r['builds']} build(s)"
            )
        print(line)


if __name__ == "__main__":
    main()
