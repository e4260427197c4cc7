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

from gridless.common.checkpoints import CheckpointStore, open_store
from gridless.common.errors import StorageError
from gridless.common.jsonsafe import finite_or_none
from gridless.common.messages import (
    Assignment,
    CheckpointInfo,
    EpochReport,
    FinishRequest,
    StartRequest,
)
from gridless.common.metric import Metric
from gridless.common.space import parse_space, sample_params
from gridless.common.spec import trial_rng
from gridless.worker.client import MasterClient, MasterGone, TrialClosed
from gridless.worker.diagnostics.babysit import epoch_warnings
from gridless.worker.function_runner import failure_text, run_function_trial
from gridless.worker.heartbeat import Heartbeat
from gridless.worker.limits import StopSource, TrialLimits, WorkerContext, run_limited
from gridless.worker.resume import pick_resume_point, trial_folder, trial_seed
from gridless.worker.sender import ReportSender
from gridless.worker.trainer import CodeNotFound, EpochMetrics, Trainer, make_trainer
from gridless.worker.trial_log import TrialLog, flush_current

__all__ = [
    "pick_resume_point",
    "run_assigned",
    "run_trial",
    "run_worker",
    "trial_folder",
    "worker_device",
]

log = logging.getLogger(__name__)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _report(worker_id: str, job: Assignment, epoch: int, m: EpochMetrics) -> EpochReport:
    return EpochReport(
        worker_id=worker_id,
        attempt=job.attempt,
        epoch=epoch,
        train_loss=_finite(m.train_loss),
        train_accuracy=m.train_accuracy,
        val_loss=_finite(m.val_loss),
        val_accuracy=m.val_accuracy,
        metrics={k: _finite(v) for k, v in m.metrics.items()},
        seconds=m.seconds,
        diverged=m.diverged,
        stats=finite_or_none(m.stats),
    )


def _save(
    store: CheckpointStore,
    trainer: Trainer,
    job: Assignment,
    epoch: int,
    score: float,
    m: EpochMetrics,
    params: dict[str, Any],
) -> CheckpointInfo:
    meta = finite_or_none(
        {
            "study": job.study,
            "trial_number": job.trial_number,
            "attempt": job.attempt,
            "epoch": epoch,
            "model": job.model,
            "params": params,
            "metrics": m.named(),
        }
    )
    written = store.write_with(
        job.study,
        trial_folder(job.trial_number),
        score=score,
        epoch=epoch,
        metric=job.metric,
        suffix=trainer.checkpoint_suffix,
        writer=lambda handle: trainer.write_checkpoint(handle, meta),
    )
    return CheckpointInfo(relpath=written.relpath, size=written.size, sha256=written.sha256)


def run_trial(
    client: MasterClient,
    store: CheckpointStore,
    worker_id: str,
    job: Assignment,
    heartbeat: StopSource | None = None,
    *,
    device: str = "cpu",
) -> str:
    """Run one assigned trial to its end; returns the final state it reported.

    A resumed trial (`job.resume_from`) restores the checkpoint and continues after its
    epoch; epochs the master already stored are not reported again. A built-in Torch
    model trains on `device`, the worker's.
    """
    if job.params is not None:
        params: dict[str, Any] = dict(job.params)
    else:
        params = sample_params(parse_space(job.space), trial_rng(job.seed, job.trial_number))
    full_params = {**job.fixed, **params}
    request = StartRequest(worker_id=worker_id, attempt=job.attempt, params=params)
    client.start(job.trial_id, request)
    store.ensure_trial_dir(job.study, trial_folder(job.trial_number))
    objective = Metric.of(job.metric, maximize=job.maximize)
    try:
        trainer = make_trainer(
            job.model, job.dataset, full_params, seed=trial_seed(job), device=device
        )
        first_epoch = 1
        resume, skipped = pick_resume_point(store, job)
        if resume is not None:
            trainer.load_checkpoint(resume)
            first_epoch = job.resume_epoch + 1
    except ValueError as exc:
        failed = FinishRequest(
            worker_id=worker_id,
            attempt=job.attempt,
            state="failed",
            error=str(exc),
            environment=isinstance(exc, CodeNotFound),
        )
        client.finish(job.trial_id, failed)
        return "failed"
    best = job.best_score
    state = "completed"
    history: list[EpochMetrics] = []
    sender = ReportSender(client, job.trial_id)
    try:
        for epoch in range(first_epoch, job.epochs + 1):
            m = trainer.train_epoch()
            history.append(m)
            score = objective.score(m.named())
            report = _report(worker_id, job, epoch, m)
            report.warnings = [
                {**w.to_json(), "epoch": epoch}
                for w in epoch_warnings(
                    history,
                    num_classes=m.stats.get("num_classes"),
                    chance_loss=m.stats.get("chance_loss") if epoch == 1 else None,
                )
            ]
            if skipped and epoch == first_epoch:
                report.warnings.append(
                    {
                        "code": "checkpoint_skipped",
                        "message": (
                            f"resumed without {len(skipped)} unusable checkpoint(s): "
                            + "; ".join(skipped)
                        )[:1000],
                        "epoch": epoch,
                    }
                )
            improved = score is not None and objective.better(score, best)
            if not m.diverged and score is not None:
                # every epoch: the latest checkpoint is what a lost trial resumes from; the
                # master's retention keeps the best and the latest of each trial
                try:
                    report.checkpoint = _save(store, trainer, job, epoch, score, m, full_params)
                except StorageError as exc:
                    # A full disk or an unreachable bucket costs the checkpoint, not the
                    # trial: the epoch is reported without one and the finding says so.
                    log.warning("trial %s epoch %d: %s", job.trial_id, epoch, exc)
                    report.warnings.append(
                        {
                            "code": "checkpoint_write_failed",
                            "message": f"epoch {epoch} has no checkpoint: {exc}"[:1000],
                            "epoch": epoch,
                        }
                    )
            if improved and not m.diverged:
                best = score
            flush_current()
            stop = sender.send(report)  # batched with others when epochs are fast
            if m.diverged:
                state = "diverged"
                break
            if stop or (heartbeat is not None and heartbeat.stop_trial.is_set()):
                sender.flush()
                stopped = FinishRequest(worker_id=worker_id, attempt=job.attempt, state="stopped")
                try:
                    client.finish(job.trial_id, stopped)
                except TrialClosed:
                    pass  # the master already closed it (early stopping, a stopped study)
                return "stopped"
        sender.flush()  # every epoch acknowledged (so committed) before the finish
        client.finish(
            job.trial_id, FinishRequest(worker_id=worker_id, attempt=job.attempt, state=state)
        )
        return state
    finally:
        sender.close()


def worker_device(gpu_ids: list[Any]) -> tuple[str, str | None]:
    """The device trials train on, and a note when it is not the one Ray gave.

    `"cuda"` when Ray gave the worker GPUs (it set CUDA_VISIBLE_DEVICES to them) and torch
    can use them; `"cpu"` with a note when torch cannot (a logical GPU on a CPU machine,
    or a CPU build of torch), so training code that follows `trial.device` still runs.
    Without torch, gridless cannot tell: `"cuda"`, the user's framework decides.
    """
    if not gpu_ids:
        return "cpu", None
    try:
        import torch
    except ImportError:
        return "cuda", None
    if torch.cuda.is_available():
        return "cuda", None
    shown = ",".join(str(g) for g in gpu_ids)
    return "cpu", (
        f"Ray gave this worker GPU {shown}, but torch {torch.__version__} sees no CUDA "
        "device (a logical GPU, or a CPU build of torch): trial.device is cpu"
    )


def run_assigned(
    client: MasterClient,
    store: CheckpointStore,
    worker_id: str,
    job: Assignment,
    heartbeat: StopSource | None,
    *,
    device: str = "cpu",
) -> None:
    """Run one claimed trial, a function's or a built-in trainer's; a failure of its code
    fails the trial, not the worker."""
    try:
        if job.train is not None:
            run_function_trial(client, store, worker_id, job, heartbeat, device=device)
        else:
            run_trial(client, store, worker_id, job, heartbeat, device=device)
    except TrialClosed as exc:
        log.info("trial %s closed by the master: %s", job.trial_number, exc)
    except MasterGone:
        raise
    except Exception as exc:  # a trainer bug must not kill the worker
        log.exception("trial %s failed", job.trial_number)
        traceback.print_exception(exc)  # into the trial's log
        failed = FinishRequest(
            worker_id=worker_id,
            attempt=job.attempt,
            state="failed",
            error=failure_text(exc),
        )
        try:
            client.finish(job.trial_id, failed)
        except TrialClosed:
            pass


def run_worker(
    master_url: str,
    store_root: str | Path,
    worker_id: str,
    *,
    token: str | None = None,
    max_trials: int | None = None,
    device: str = "cpu",
    device_note: str | None = None,
) -> int:
    """Claim and run trials until the master says stop; returns the number of trials run.
    `device_note` (why `device` is not the GPU Ray gave) heads every trial's log."""
    client = MasterClient(master_url, token=token)
    store = open_store(store_root)
    heartbeat: Heartbeat | None = None
    done = 0
    try:
        while max_trials is None or done < max_trials:
            answer = client.claim(worker_id)
            if heartbeat is None:
                beats = MasterClient(
                    master_url, token=token, retry_for_s=answer.heartbeat_interval_s
                )
                heartbeat = Heartbeat(beats, worker_id, answer.heartbeat_interval_s).start()
            if answer.action == "stop":
                break
            if answer.action == "wait" or answer.assignment is None:
                heartbeat.watch(None)
                time.sleep(max(answer.retry_after_s, 0.05))
                continue
            job = answer.assignment
            heartbeat.watch(job.trial_id, job.attempt)
            header = f"trial {job.trial_number}, attempt {job.attempt}, worker {worker_id}"
            if device_note is not None:
                header += f"; {device_note}"
            limits = TrialLimits.of(job)
            if limits is not None:  # in a child process the worker can end
                context = WorkerContext(master_url, str(store_root), worker_id, token, device)
                run_limited(limits, context, client, store, job, header, heartbeat)
            else:
                with TrialLog(store, job.study, trial_folder(job.trial_number), header):
                    run_assigned(client, store, worker_id, job, heartbeat, device=device)
            heartbeat.watch(None)
            done += 1
    finally:
        if heartbeat is not None:
            heartbeat.stop()
        client.close()
    return done
