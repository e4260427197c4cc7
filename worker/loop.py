"""The worker loop (the seed's "worker"): claim, sample, train epoch by epoch, report.

Plain functions, testable without Ray; `worker.actor` wraps `run_worker` in a Ray actor.
"""

from __future__ import annotations

import logging
import math
import time
import traceback
from pathlib import Path
from typing import Any

from common.checkpoints import CheckpointStore
from common.protocol import (
    Assignment,
    CheckpointInfo,
    EpochReport,
    FinishRequest,
    StartRequest,
)
from common.space import parse_space, sample_params
from common.spec import trial_rng
from worker.client import MasterClient, MasterGone, TrialClosed
from worker.trainer import make_trainer

__all__ = ["run_trial", "run_worker"]

log = logging.getLogger(__name__)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _better(score: float, best: float | None, *, maximize: bool) -> bool:
    return best is None or (score > best if maximize else score < best)


def run_trial(
    client: MasterClient, store: CheckpointStore, worker_id: str, job: Assignment
) -> str:
    """Run one assigned trial to its end; returns the final state it reported."""
    params: dict[str, Any]
    if job.params is not None:
        params = dict(job.params)
    else:
        params = sample_params(parse_space(job.space), trial_rng(job.seed, job.trial_number))
    full_params = {**job.fixed, **params}
    client.start(
        job.trial_id, StartRequest(worker_id=worker_id, attempt=job.attempt, params=params)
    )
    maximize = job.metric != "val_loss"
    trial_dir = f"{job.trial_number:06d}"
    store.ensure_trial_dir(job.study, trial_dir)
    try:
        trainer = make_trainer(
            job.model, job.dataset, full_params, seed=job.seed * 1_000_003 + job.trial_number
        )
    except ValueError as exc:
        client.finish(
            job.trial_id,
            FinishRequest(
                worker_id=worker_id, attempt=job.attempt, state="failed", error=str(exc)
            ),
        )
        return "failed"
    best: float | None = None
    state = "completed"
    for epoch in range(1, job.epochs + 1):
        m = trainer.train_epoch()
        score = m.val_accuracy if maximize else m.val_loss
        checkpoint = None
        if (
            not m.diverged
            and math.isfinite(score)
            and (_better(score, best, maximize=maximize) or epoch == job.epochs)
        ):
            written = store.write(
                job.study,
                trial_dir,
                score=score,
                epoch=epoch,
                metric=job.metric,
                arrays=trainer.state_arrays(),
                meta={
                    "study": job.study,
                    "trial_number": job.trial_number,
                    "epoch": epoch,
                    "params": full_params,
                    "metrics": {k: _finite(v) for k, v in vars(m).items() if k != "diverged"},
                },
            )
            checkpoint = CheckpointInfo(
                relpath=written.relpath, size=written.size, sha256=written.sha256
            )
            if _better(score, best, maximize=maximize):
                best = score
        ack = client.report(
            job.trial_id,
            EpochReport(
                worker_id=worker_id,
                attempt=job.attempt,
                epoch=epoch,
                train_loss=_finite(m.train_loss),
                train_accuracy=m.train_accuracy,
                val_loss=_finite(m.val_loss),
                val_accuracy=m.val_accuracy,
                seconds=m.seconds,
                diverged=m.diverged,
                checkpoint=checkpoint,
            ),
        )
        if m.diverged:
            state = "diverged"
            break
        if ack.stop:
            return "stopped"
    client.finish(
        job.trial_id, FinishRequest(worker_id=worker_id, attempt=job.attempt, state=state)
    )
    return state


def run_worker(
    master_url: str,
    store_root: str | Path,
    worker_id: str,
    *,
    token: str | None = None,
    max_trials: int | None = None,
) -> int:
    """Claim and run trials until the master says stop; returns the number of trials run."""
    client = MasterClient(master_url, token=token)
    store = CheckpointStore(store_root)
    done = 0
    try:
        while max_trials is None or done < max_trials:
            answer = client.claim(worker_id)
            if answer.action == "stop":
                break
            if answer.action == "wait" or answer.assignment is None:
                time.sleep(max(answer.retry_after_s, 0.05))
                continue
            job = answer.assignment
            try:
                run_trial(client, store, worker_id, job)
            except TrialClosed as exc:
                log.info("trial %s closed by the master: %s", job.trial_id, exc)
            except MasterGone:
                raise
            except Exception as exc:  # a trainer bug must not kill the worker
                log.exception("trial %s failed", job.trial_id)
                detail = "".join(traceback.format_exception_only(exc)).strip()[:4000]
                try:
                    client.finish(
                        job.trial_id,
                        FinishRequest(
                            worker_id=worker_id, attempt=job.attempt, state="failed", error=detail
                        ),
                    )
                except TrialClosed:
                    pass
            done += 1
    finally:
        client.close()
    return done
