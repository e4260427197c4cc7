"""Run one trial of a `train: "module:function"` study: the user's function with a
`gridless.Trial` whose reports and checkpoints go to the master."""

from __future__ import annotations

import importlib
import logging
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO

from gridless.common.checkpoints import CheckpointStore
from gridless.common.errors import StorageError
from gridless.common.jsonsafe import finite_or_none
from gridless.common.messages import (
    Assignment,
    CheckpointInfo,
    EpochReport,
    FinishRequest,
    StartRequest,
)
from gridless.common.space import parse_space, sample_params
from gridless.common.spec import trial_rng
from gridless.worker.client import MasterClient, MasterGone, TrialClosed
from gridless.worker.limits import StopSource
from gridless.worker.resume import pick_resume_point, trial_folder, trial_seed
from gridless.worker.sender import ReportSender
from gridless.worker.trainer import CodeNotFound
from gridless.worker.trial import Trial, TrialStopped, Written
from gridless.worker.trial_log import flush_current

__all__ = [
    "MasterBackend",
    "failure_text",
    "load_train_function",
    "report_returned",
    "run_function_trial",
]

log = logging.getLogger(__name__)

TRACEBACK_LINES = 12


def load_train_function(target: str, *, role: str = "train") -> Callable[..., Any]:
    """The callable a spec's `train: "module:function"` (or `role:`, e.g. predict) names.

    Raises:
        CodeNotFound: when the module does not import or has no such callable.
    """
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # the user's module may raise anything on import
        raise CodeNotFound(
            f"{role} {target!r}: cannot import {module_name!r} "
            f"({exc.__class__.__name__}: {exc}); sys.path starts {sys.path[:3]}"
        ) from None
    function = getattr(module, attr, None)
    if not callable(function):
        raise CodeNotFound(f"{role} {target!r}: {module_name} has no callable {attr!r}")
    return function  # type: ignore[no-any-return]


class MasterBackend:
    """A trial's reports and checkpoints, sent to the master and written to the store."""

    def __init__(
        self,
        client: MasterClient,
        store: CheckpointStore,
        worker_id: str,
        job: Assignment,
        *,
        heartbeat: StopSource | None = None,
        resume: Path | None = None,
        skipped: list[str] | None = None,
    ) -> None:
        self.client, self.store, self.worker_id, self.job = client, store, worker_id, job
        self.heartbeat = heartbeat
        self.metric: str | None = job.metric
        self.first_epoch = job.resume_epoch + 1 if resume is not None else 1
        self._resume = resume
        self._skipped = list(skipped or [])
        self._last: EpochReport | None = None
        self._failed: list[dict[str, Any]] = []  # checkpoint writes that failed, to tell
        self._clock = time.perf_counter()
        # epochs faster than a round trip travel in batches
        self.sender = ReportSender(client, job.trial_id)

    deferred = True  # a report waits for a save() of its epoch: one message for both

    def send(
        self,
        epoch: int,
        metrics: dict[str, float | None],
        diverged: str | None,
        *,
        stats: dict[str, Any] | None = None,
        warnings: list[dict[str, Any]] | None = None,
        checkpoint: Written | None = None,
    ) -> bool:
        now = time.perf_counter()
        report = EpochReport(
            worker_id=self.worker_id,
            attempt=self.job.attempt,
            epoch=epoch,
            metrics=metrics,
            seconds=max(now - self._clock, 0.0),
            diverged=diverged is not None,
            stats=finite_or_none(stats or {}),
            warnings=list(warnings or [])[:24],
            checkpoint=_info(checkpoint),
        )
        self._clock = now
        if diverged is not None:
            report.warnings.append({"code": "diverged", "message": diverged, "epoch": epoch})
        if self._skipped:
            message = f"resumed without {len(self._skipped)} unusable checkpoint(s): "
            report.warnings.append(
                {
                    "code": "checkpoint_skipped",
                    "message": (message + "; ".join(self._skipped))[:1000],
                    "epoch": epoch,
                }
            )
            self._skipped = []
        report.warnings.extend(self._failed)
        self._failed = []
        flush_current()
        stop = self.sender.send(report)
        self._last = report
        stop_asked = self.heartbeat is not None and self.heartbeat.stop_trial.is_set()
        return stop or stop_asked

    def write(
        self,
        epoch: int,
        score: float | None,
        suffix: str,
        writer: Callable[[BinaryIO], None],
        *,
        reported: Iterable[str],
    ) -> Written | None:
        if score is None:
            names = ", ".join(sorted(reported)) or "nothing"
            raise ValueError(
                f"trial.save: epoch {epoch} reported {names} but not {self.job.metric!r}, the "
                "study's metric, which the checkpoint's name carries: report it before "
                "saving, or name one of those in the spec's metric"
            )
        try:
            written = self.store.write_with(
                self.job.study,
                trial_folder(self.job.trial_number),
                score=score,
                epoch=epoch,
                metric=self.job.metric,
                suffix=suffix,
                writer=writer,
            )
        except StorageError as exc:
            # A full disk or an unreachable bucket costs the checkpoint, not the trial.
            log.warning("trial %s epoch %d: %s", self.job.trial_number, epoch, exc)
            self._failed.append(
                {
                    "code": "checkpoint_write_failed",
                    "message": f"epoch {epoch} has no checkpoint: {exc}"[:1000],
                    "epoch": epoch,
                }
            )
            return None
        return Written(written.relpath, written.size, written.sha256)

    def attach(self, epoch: int, checkpoint: Written) -> None:
        """A second save of an epoch already sent: the same report again with the file
        (the master keeps the metrics it stored and records the checkpoint)."""
        report = self._last
        if report is None or report.epoch != epoch:
            raise ValueError(f"trial.save: epoch {epoch} was not reported last")
        update: dict[str, Any] = {"checkpoint": _info(checkpoint), "warnings": self._failed}
        self._failed = []
        self.sender.send(report.model_copy(update=update))

    def resume_file(self) -> Path | None:
        return self._resume


def _info(written: Written | None) -> CheckpointInfo | None:
    if written is None:
        return None
    return CheckpointInfo(relpath=written.path, size=written.size, sha256=written.sha256)


def report_returned(trial: Trial, result: Any, metric: str) -> None:
    """A function that returned instead of reporting is a one-epoch trial: its number is
    the study's metric, a dict its named metrics."""
    if result is not None and not trial.reported:
        trial.report(1, **(result if isinstance(result, dict) else {metric: result}))


def failure_text(exc: BaseException) -> str:
    """The exception's type and message, then the last lines of its traceback."""
    head = "".join(traceback.format_exception_only(exc)).strip()
    lines = "".join(traceback.format_tb(exc.__traceback__)).rstrip().splitlines()
    return (head + "\n" + "\n".join(lines[-TRACEBACK_LINES:]))[:4000]


def run_function_trial(
    client: MasterClient,
    store: CheckpointStore,
    worker_id: str,
    job: Assignment,
    heartbeat: StopSource | None = None,
    *,
    device: str = "cpu",
) -> str:
    """Run the study's training function for one assigned trial; the final state."""
    assert job.train is not None  # run_worker dispatches on it
    if job.params is not None:
        params: dict[str, Any] = dict(job.params)
    else:
        params = sample_params(parse_space(job.space), trial_rng(job.seed, job.trial_number))
    client.start(
        job.trial_id, StartRequest(worker_id=worker_id, attempt=job.attempt, params=params)
    )
    store.ensure_trial_dir(job.study, trial_folder(job.trial_number))

    backend: MasterBackend | None = None

    def finish(state: str, error: str | None = None, *, environment: bool = False) -> str:
        flush_current()  # the log is complete before the master may pause the study
        if backend is not None:
            try:
                backend.sender.flush()  # every epoch committed before the finish
            except TrialClosed:
                return state  # the master closed it already (early stopping)
            finally:
                backend.sender.close()
        request = FinishRequest(
            worker_id=worker_id,
            attempt=job.attempt,
            state=state,
            error=error,
            environment=environment,
        )
        try:
            client.finish(job.trial_id, request)
        except TrialClosed:
            pass  # the master closed it already (early stopping, a stopped study)
        return state

    try:
        function = load_train_function(job.train)
    except ValueError as exc:
        return finish("failed", str(exc), environment=True)
    resume, skipped = pick_resume_point(store, job)
    backend = MasterBackend(
        client, store, worker_id, job, heartbeat=heartbeat, resume=resume, skipped=skipped
    )
    trial = Trial(
        {**job.fixed, **params},
        max_epochs=job.epochs,
        number=job.trial_number,
        seed=trial_seed(job),
        stage=job.stage,
        device=device,
        backend=backend,
    )
    try:
        result = function(trial)
        report_returned(trial, result, job.metric)
        trial.settle()  # the last epoch's report, if it still waits
    except TrialStopped as stop:
        return finish(stop.state)
    except (TrialClosed, MasterGone):
        backend.sender.close()
        raise  # the worker loop handles these: not the user's code failing
    except Exception as exc:  # the user's code failed: the trial fails, the worker goes on
        log.warning("trial %s failed: %s", job.trial_number, exc)
        traceback.print_exception(exc)  # into the trial's log
        try:
            trial.settle()  # the epochs it finished still count
        except TrialStopped:
            pass
        return finish("failed", failure_text(exc))
    finally:
        trial.close()  # watch()'s hooks leave the user's model
    if trial.reported and not any(job.metric in m for m in trial.reported.values()):
        names = sorted({k for m in trial.reported.values() for k in m})
        return finish(
            "failed",
            f"the trial reported {', '.join(names)} but never {job.metric!r}, the study's "
            "metric: report it, or name one of those in the spec's metric",
        )
    if not trial.reported:
        return finish(
            "failed",
            f"train {job.train!r} returned without reporting anything: call "
            "trial.report(epoch, ...) or return the objective's value",
        )
    return finish("completed")
