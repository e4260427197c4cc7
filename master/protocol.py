"""The worker protocol on the master: claim, start, report, finish, heartbeat, and the
timers (the reaper, the stage controller's sweep), each a job of the single writer.

The logic lives by concern: `claims`, `reports`, `stages`, `retention`, `liveness`; this
façade runs their functions in `GroupWriter` transactions (group commit), so a
2xx still means committed. Every call has a job builder (`*_job`) that async routes hand
to `writer.run_async`, and a blocking method of the same name for everything else.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import select

from gridless.common.db import StudyRow, TrialRow, session_scope, utcnow
from gridless.common.messages import (
    ClaimResponse,
    EpochReport,
    FinishRequest,
    HeartbeatRequest,
    ReportAck,
    StartRequest,
)
from gridless.common.states import StudyState
from gridless.master import claims, liveness, reports, stages
from gridless.master.claims import ParamSuggester
from gridless.master.context import MasterContext
from gridless.master.sampler_state import ModelSampler
from gridless.master.writer import Batch, GroupWriter

__all__ = ["ParamSuggester", "TrialProtocol"]

T = TypeVar("T")
Job = Callable[[Batch], T]


class TrialProtocol:
    """The calls workers make, and the timers that keep trials honest."""

    def __init__(self, context: MasterContext, *, suggester: ParamSuggester | None = None) -> None:
        self.context = context
        self.sessions = context.sessions
        # the default model-based sampler: one TPE model per study (master/sampler_state.py)
        self.sampler = ModelSampler()
        self.suggester = suggester or self.sampler
        self.writer = GroupWriter(context)

    def close(self) -> None:
        """Commit what is queued, stop the writer and the sampler's preparer."""
        self.writer.close()
        self.sampler.close()

    def active_resources(self) -> tuple[float, float]:
        """(cpu, gpu) per worker for the oldest running study (1 CPU when none runs)."""
        with session_scope(self.sessions) as s:
            study = s.scalar(
                select(StudyRow)
                .where(StudyRow.state.in_([StudyState.RUNNING.value, StudyState.PAUSED.value]))
                .order_by(StudyRow.id)
                .limit(1)
            )
            wanted = (study.spec.get("resources") or {}) if study is not None else {}
        return float(wanted.get("cpu", 1.0)), float(wanted.get("gpu", 0.0))

    # -- jobs (for async routes) -------------------------------------------------------

    def claim_job(self, worker_id: str) -> Job[ClaimResponse]:
        interval = self.context.heartbeat_interval_s

        def job(batch: Batch) -> ClaimResponse:
            answer = claims.claim(batch.session, worker_id, self.suggester)
            return answer.model_copy(update={"heartbeat_interval_s": interval})

        return job

    def start_job(self, trial_id: int, request: StartRequest) -> Job[ReportAck]:
        return lambda batch: reports.start_trial(batch.session, trial_id, request)

    def report_job(self, trial_id: int, report: EpochReport) -> Job[ReportAck]:
        store = self.context.store
        return lambda batch: reports.record_report(batch, store, trial_id, report)

    def reports_job(self, trial_id: int, batch_of: list[EpochReport]) -> Job[list[ReportAck]]:
        """Several epochs of one trial, in order, in one transaction; a report after the
        trial ended (stopped, diverged) is answered with stop and not stored."""
        store = self.context.store

        def job(batch: Batch) -> list[ReportAck]:
            reports.prefetch_stored(batch.session, trial_id, [r.epoch for r in batch_of])
            acks: list[ReportAck] = []
            for report in batch_of:
                if acks and acks[-1].stop:
                    acks.append(ReportAck(stored=False, stop=True))
                    continue
                acks.append(reports.record_report(batch, store, trial_id, report))
            return acks

        return job

    def finish_job(self, trial_id: int, request: FinishRequest) -> Job[ReportAck]:
        return lambda batch: reports.finish_trial(batch.session, trial_id, request)

    def heartbeat_job(self, request: HeartbeatRequest) -> Job[ReportAck]:
        return lambda batch: liveness.heartbeat(batch.session, request)

    # -- blocking calls ------------------------------------------------------------------

    def claim(self, worker_id: str) -> ClaimResponse:
        """A lost trial to resume, a new trial of the oldest running study, wait or stop."""
        return self.writer.run(self.claim_job(worker_id))

    def start_trial(self, trial_id: int, request: StartRequest) -> ReportAck:
        """Register the sampled parameters; the trial runs. Repeats are no-ops."""
        return self.writer.run(self.start_job(trial_id, request))

    def record_report(self, trial_id: int, report: EpochReport) -> ReportAck:
        """Store one epoch's metrics (and its checkpoint) once; a repeat answers stored=False."""
        return self.writer.run(self.report_job(trial_id, report))

    def record_reports(self, trial_id: int, batch_of: list[EpochReport]) -> list[ReportAck]:
        """Store several epochs of one trial at once (a worker's batch)."""
        return self.writer.run(self.reports_job(trial_id, batch_of))

    def finish_trial(self, trial_id: int, request: FinishRequest) -> ReportAck:
        """Mark a trial finished; a repeat of the same final state is a no-op."""
        return self.writer.run(self.finish_job(trial_id, request))

    def heartbeat(self, request: HeartbeatRequest) -> ReportAck:
        """A worker is alive (and so is its trial); `stop` asks it to end that trial."""
        return self.writer.run(self.heartbeat_job(request))

    def resume_checkpoint(self, path: str, epochs: int) -> TrialRow:
        """A new trial continuing from a recorded checkpoint (see `claims`)."""
        return self.writer.run(lambda b: claims.resume_checkpoint(b.session, path, epochs))

    # -- timers ----------------------------------------------------------------------------

    def reap(self, now: dt.datetime | None = None) -> list[int]:
        """Mark open trials whose heartbeat is older than the grace period lost (they are
        resumed by the next claim); returns their ids."""
        cutoff = (now or utcnow()) - dt.timedelta(seconds=self.context.grace_s)
        return self.writer.run(lambda b: liveness.reap(b.session, cutoff))

    def advance_stages(self) -> list[int]:
        """Close every finished stage of the running studies (the monitor's sweep)."""
        return self.writer.run(lambda b: stages.advance_all(b.session))

    def worker_gone(self, worker_id: str, state: str = "dead") -> list[int]:
        """A worker died or was killed: its open trials are lost at once (no waiting for
        heartbeats) and resume on another worker."""
        return self.writer.run(lambda b: liveness.worker_gone(b.session, worker_id, state))
