"""Ensemble builds as jobs on workers.

`POST .../ensembles` checks what it can at once (the study completed, the hooks named,
a scored trial with a checkpoint), stores a queued job and answers; a thread of the
master hands the work to the launcher (a `TaskActor` of the study's size, the workers'
environment), marks the job running when a worker holds it, then saves the report and
marks it done, or failed with why. The master only waits: the K models are trained
and predicted on by a worker, off the master's process.

Jobs are rows (`EnsembleJobRow`), so they outlive the master; one that a master left
queued or running is failed, with why, when the next master starts (`recover`).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update

from gridless.common.db import EnsembleJobRow, EnsembleRow, StudyRow, session_scope, utcnow
from gridless.common.errors import GridlessError, NotFoundError, SpecError
from gridless.common.states import JobState
from gridless.master.context import load_study
from gridless.master.launcher import TaskFailed, TaskHandle
from gridless.master.schemas import EnsembleBuild
from gridless.master.services import StudyService
from gridless.master.worker_manager import WorkerManager

if TYPE_CHECKING:  # the worker's side is imported when a job starts, not with the app
    from gridless.worker.ensemble_jobs import EnsembleOutcome, EnsembleRequest

__all__ = ["EnsembleJobs", "job_url"]

log = logging.getLogger(__name__)

ACTIVE = (JobState.QUEUED.value, JobState.RUNNING.value)


def job_url(study_id: int, job_id: int) -> str:
    """Where a job is polled."""
    return f"/api/v1/studies/{study_id}/ensembles/jobs/{job_id}"


class EnsembleJobs:
    """Submits ensemble builds to workers and keeps their rows."""

    def __init__(self, service: StudyService, workers: WorkerManager) -> None:
        self.service = service
        self.workers = workers
        self._queue: queue.SimpleQueue[tuple[int, EnsembleRequest, float, float]] = (
            queue.SimpleQueue()
        )
        self._dispatcher: threading.Thread | None = None
        self._waiters: list[threading.Thread] = []
        self._pending = 0  # jobs put in the queue and not yet handed to a waiter
        self._lock = threading.Lock()

    def recover(self) -> int:
        """Fail the jobs a previous master left unfinished (their worker answered to it,
        not to this one); how many."""
        with self.service.context.write_lock, session_scope(self.service.sessions) as s:
            result = s.execute(
                update(EnsembleJobRow)
                .where(EnsembleJobRow.state.in_(ACTIVE))
                .values(
                    state=JobState.FAILED.value,
                    error="the master stopped before this job finished; POST again to rebuild",
                    finished_at=utcnow(),
                )
            )
            failed = int(result.rowcount or 0)  # type: ignore[attr-defined]
        if failed:
            log.warning("%d ensemble job(s) of a previous master marked failed", failed)
        return failed

    def submit(self, study: StudyRow, options: EnsembleBuild) -> EnsembleJobRow:
        """Store a queued job for `study` and start it.

        Raises:
            SpecError: when a `train:` study names no hooks, the model is not built in,
                or no trial scored with a checkpoint.
            ConflictError: while the study still runs.
        """
        request = self._request(study, options)
        resources = study.spec.get("resources") or {}
        with self.service.context.write_lock, session_scope(self.service.sessions) as s:
            row = EnsembleJobRow(
                study_id=study.id,
                state=JobState.QUEUED.value,
                options=options.model_dump(mode="json"),
            )
            s.add(row)
            s.flush()
        cpu, gpu = float(resources.get("cpu", 1.0)), float(resources.get("gpu", 0.0))
        with self._lock:
            self._pending += 1
            self._queue.put((row.id, request, cpu, gpu))
            if self._dispatcher is None:
                self._dispatcher = threading.Thread(
                    target=self._dispatch, name="gridless-ensemble-jobs", daemon=True
                )
                self._dispatcher.start()
        return row

    def get(self, study_id: int, job_id: int) -> tuple[EnsembleJobRow, EnsembleRow | None]:
        """A job of a study, with its report once done.

        Raises:
            NotFoundError: for an unknown study, or a job of another study.
        """
        with session_scope(self.service.sessions) as s:
            load_study(s, study_id)
            job = s.get(EnsembleJobRow, job_id)
            if job is None or job.study_id != study_id:
                raise NotFoundError(f"study {study_id} has no ensemble job {job_id}")
            report = s.get(EnsembleRow, job.ensemble_id) if job.ensemble_id else None
            return job, report

    def study_jobs(
        self, study_id: int, *, limit: int, offset: int
    ) -> tuple[list[EnsembleJobRow], int]:
        """A study's jobs, newest first."""
        with session_scope(self.service.sessions) as s:
            load_study(s, study_id)
            mine = EnsembleJobRow.study_id == study_id
            rows = s.scalars(
                select(EnsembleJobRow)
                .where(mine)
                .order_by(EnsembleJobRow.id.desc())
                .limit(limit)
                .offset(offset)
            )
            count = s.scalar(select(func.count()).select_from(EnsembleJobRow).where(mine))
            return list(rows), count or 0

    def join(self, timeout_s: float = 60) -> None:
        """Wait (at most `timeout_s`) for the jobs this master started to end; for tests."""
        deadline = time.monotonic() + timeout_s
        while self._pending and time.monotonic() < deadline:
            time.sleep(0.02)
        with self._lock:
            waiters = list(self._waiters)
        for thread in waiters:
            thread.join(max(0.0, deadline - time.monotonic()))

    # -- the request, checked before the job exists ---------------------------------------

    def _request(self, study: StudyRow, options: EnsembleBuild) -> EnsembleRequest:
        from gridless.worker.ensemble_jobs import EnsembleMember, EnsembleRequest

        spec = study.spec
        predict = evaluate = None
        if spec.get("train"):
            predict = options.predict or spec.get("predict")
            evaluate = options.evaluate or spec.get("evaluate")
            if predict is None or evaluate is None:
                raise SpecError(
                    f"study {study.id} trains {spec['train']!r}, a function of yours: to "
                    "ensemble its models, give predict(state, params, split) and "
                    "evaluate(outputs, split) (spec keys predict: and evaluate:, or this "
                    "request's predict and evaluate; docs/user-code.md#ensembles)"
                )
        elif ":" in spec["model"]:
            raise SpecError("ensembles need a built-in model (numpy.* or torch.*)")
        row, chosen = self.service.ensemble_inputs(study.id, options.k)
        if not chosen:
            raise SpecError("the study has no scored trial with a checkpoint")
        fixed: dict[str, Any] = spec.get("fixed", {})
        # a function's hooks get the fixed values among the parameters, as its trials did
        merged = fixed if predict is not None else {}
        top = [
            EnsembleMember(t.number, {**merged, **(t.params or {})}, p, t.epochs)
            for t, p in chosen
        ]
        kept = self.service.trial_checkpoints(chosen[0][0].id) if predict is not None else []
        return EnsembleRequest(
            study_id=study.id,
            metric=row.objective,
            k=options.k,
            top=tuple(top),
            seed=row.seed,
            model=spec["model"],
            dataset=spec["dataset"],
            fixed=fixed,
            retrain=options.retrain,
            predict=predict,
            evaluate=evaluate,
            epoch_checkpoints=tuple((ck.epoch, ck.path) for ck in kept),
        )

    # -- the jobs' threads -----------------------------------------------------------------

    def _dispatch(self) -> None:
        """Hand each job to the launcher, for the master's whole life.

        The first job may start Ray (`gridless master` creates its launcher on first use),
        and Ray's processes die with the thread that started them (Linux's
        PR_SET_PDEATHSIG): this thread must outlive them, so it never ends, and waiting
        for each job's answer is a thread of its own.
        """
        from gridless.worker.ensemble_jobs import build_ensembles

        while True:
            job_id, request, cpu, gpu = self._queue.get()
            try:
                task = self.workers.launcher.start_task(build_ensembles, request, cpu=cpu, gpu=gpu)
            except Exception as exc:  # no launcher, no node that could ever run it
                self._fail(job_id, str(exc) if isinstance(exc, GridlessError) else repr(exc))
                with self._lock:
                    self._pending -= 1
                continue
            waiter = threading.Thread(
                target=self._wait,
                args=(job_id, request.study_id, task),
                name=f"gridless-ensemble-job-{job_id}",
                daemon=True,
            )
            waiter.start()
            with self._lock:
                self._waiters = [t for t in self._waiters if t.is_alive()] + [waiter]
                self._pending -= 1

    def _wait(self, job_id: int, study_id: int, task: TaskHandle[EnsembleOutcome]) -> None:
        """Follow one job on its worker: running, then done or failed."""
        try:
            host, pid = task.started()
            self._set(
                job_id, state=JobState.RUNNING.value, host=host, pid=pid, started_at=utcnow()
            )
            outcome = task.result()
        except (TaskFailed, GridlessError) as exc:
            self._fail(job_id, str(exc))
            return
        except Exception as exc:  # a bug here must still end the job
            log.exception("ensemble job %d failed", job_id)
            self._fail(job_id, f"{exc.__class__.__name__}: {exc}")
            return
        if outcome.report is None:
            self._fail(job_id, outcome.error or "the worker answered no report")
            return
        self._done(job_id, study_id, outcome)

    def _set(self, job_id: int, **values: Any) -> bool:
        """Update a job still queued or running (a finished one never changes)."""
        with self.service.context.write_lock, session_scope(self.service.sessions) as s:
            result = s.execute(
                update(EnsembleJobRow)
                .where(EnsembleJobRow.id == job_id, EnsembleJobRow.state.in_(ACTIVE))
                .values(**values)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def _fail(self, job_id: int, error: str) -> None:
        log.info("ensemble job %d failed: %s", job_id, error)
        self._set(job_id, state=JobState.FAILED.value, error=error, finished_at=utcnow())

    def _done(self, job_id: int, study_id: int, outcome: EnsembleOutcome) -> None:
        """Save the report and mark the job done, in one transaction."""
        with self.service.context.write_lock, session_scope(self.service.sessions) as s:
            job = s.get(EnsembleJobRow, job_id)
            if job is None or job.state not in ACTIVE:
                return  # a later master failed it meanwhile: its answer is not kept
            report = EnsembleRow(study_id=study_id, report=outcome.report)
            s.add(report)
            s.flush()
            job.state = JobState.DONE.value
            job.ensemble_id = report.id
            job.host, job.pid = outcome.host, outcome.pid
            job.finished_at = utcnow()
