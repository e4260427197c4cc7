"""The single writer: group commit, one job's error undoing only its own
rows, answers after the commit, batched reports, and a study that completes the moment
its last trial finishes."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from gridless.common.db import EpochMetricRow, StudyRow, WorkerRow, session_scope
from gridless.common.errors import ConflictError, StorageError
from gridless.common.messages import EpochReport, FinishRequest, StartRequest
from gridless.master.writer import Batch
from tests.conftest import Master, tiny_spec


class OwnBatches:
    """Counts the batches that carried this test's own jobs, and those jobs.

    The writer's `batches` and `jobs_done` are shared with the master's monitor (its
    liveness sweep and stage sweep run as writer jobs on their own timer), so a test that
    reads them is only right on an idle machine. This wraps the writer's commit and looks
    at each batch's jobs: a job counts when `mine` holds it.
    """

    def __init__(self, writer: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.mine: dict[int, Any] = {}  # held, so that no other job reuses an id
        self.batches = 0
        self.jobs = 0
        commit = writer._commit

        def counting(taken: list[tuple[Any, Any]]) -> None:
            own = sum(1 for job, _future in taken if id(job) in self.mine)
            commit(taken)
            if own:
                self.batches += 1
                self.jobs += own

        monkeypatch.setattr(writer, "_commit", counting)

    def tag(self, job: Any) -> Any:
        """Mark `job` as this test's own and return it."""
        self.mine[id(job)] = job
        return job


def rows(master: Master, model: Any) -> int:
    with session_scope(master.service.sessions) as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def test_a_failing_job_undoes_only_its_own_writes(
    master: Master, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = master.app.state.protocol.writer
    own = OwnBatches(writer, monkeypatch)
    gate = threading.Event()

    running = threading.Event()

    def blocker(batch: Batch) -> None:
        running.set()
        gate.wait(10)  # holds the writer so the next three land in one batch

    def add(name: str, fail: bool) -> Any:
        def job(batch: Batch) -> str:
            batch.session.add(WorkerRow(id=name, state="idle", trials_run=0))
            batch.session.flush()
            if fail:
                raise ConflictError(f"{name} refused")
            return name

        return job

    first = writer.submit(blocker)
    assert running.wait(10)  # the writer is inside the blocker: the three queue behind it
    futures = [writer.submit(own.tag(add(n, n == "w2"))) for n in ("w1", "w2", "w3")]
    gate.set()
    first.result(10)
    assert futures[0].result(10) == "w1"
    with pytest.raises(ConflictError, match="w2 refused"):
        futures[1].result(10)
    assert futures[2].result(10) == "w3"
    assert (own.batches, own.jobs) == (1, 3)  # the three shared one transaction
    with session_scope(master.service.sessions) as s:
        assert sorted(s.scalars(select(WorkerRow.id))) == ["w1", "w3"]


def test_a_failed_commit_fails_every_job_of_the_batch_and_runs_no_after_commit(
    master: Master, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError
    from sqlalchemy.orm import Session

    writer = master.app.state.protocol.writer
    deleted: list[str] = []

    def job(batch: Batch) -> None:
        batch.session.add(WorkerRow(id="doomed", state="idle", trials_run=0))
        batch.after_commit(lambda: deleted.append("file"))

    def broken_commit(self: Session) -> None:
        raise OperationalError("COMMIT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(Session, "commit", broken_commit)
    with pytest.raises(StorageError, match="database error: OperationalError"):
        writer.run(job)
    monkeypatch.undo()
    assert deleted == []
    assert rows(master, WorkerRow) == 0


def claim_and_start(api: httpx.Client, worker: str) -> int:
    job = api.post("/workers/claim", json={"worker_id": worker}).json()["assignment"]
    api.post(
        f"/trials/{job['trial_id']}/start",
        json={"worker_id": worker, "attempt": 0, "params": {"learning_rate": 0.1}},
    ).raise_for_status()
    return int(job["trial_id"])


def report(worker: str, epoch: int, **extra: Any) -> dict[str, Any]:
    return {"worker_id": worker, "attempt": 0, "epoch": epoch, "val_accuracy": 0.5, **extra}


def test_concurrent_reports_share_transactions(
    master: Master, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = tiny_spec(early_stopping={"rule": "none"}, stages=[{"trials": 16, "epochs": 30}])
    master.service.create_study(spec)
    protocol = master.app.state.protocol
    with httpx.Client(base_url=master.url + "/api/v1", timeout=60) as api:
        trials = [claim_and_start(api, f"w{i}") for i in range(16)]
    own = OwnBatches(protocol.writer, monkeypatch)
    report_job = protocol.report_job
    monkeypatch.setattr(protocol, "report_job", lambda *a: own.tag(report_job(*a)))
    reporting = threading.Event()
    sweeps = 0

    def monitor() -> None:
        # the monitor's own writer jobs, forced while the reports arrive: a liveness
        # sweep and a stage sweep, the jobs that load made the old count trip over
        nonlocal sweeps
        while True:
            protocol.reap()
            protocol.advance_stages()
            sweeps += 1
            if reporting.is_set():
                return

    def worker(i: int) -> None:
        with httpx.Client(base_url=master.url + "/api/v1", timeout=60) as http:
            for epoch in range(1, 31):
                answer = http.post(f"/trials/{trials[i]}/reports", json=report(f"w{i}", epoch))
                assert answer.status_code == 200, answer.text

    sweeper = threading.Thread(target=monitor)
    sweeper.start()
    try:
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(worker, range(16)))
    finally:
        reporting.set()
        sweeper.join(30)
    assert sweeps >= 2  # one at least while the reports arrived
    assert rows(master, EpochMetricRow) == 16 * 30  # every report stored once
    assert own.jobs == 16 * 30
    assert own.batches < own.jobs  # some commits carried several reports


def test_a_batch_is_idempotent_per_epoch_and_stops_where_the_trial_ends(master: Master) -> None:
    spec = tiny_spec(early_stopping={"rule": "none"}, stages=[{"trials": 2, "epochs": 5}])
    study = master.service.create_study(spec)
    with httpx.Client(base_url=master.url + "/api/v1", timeout=60) as api:
        tid = claim_and_start(api, "w1")
        batch = [report("w1", 1), report("w1", 2), report("w1", 2), report("w1", 3)]
        answer = api.post(f"/trials/{tid}/reports/batch", json={"reports": batch})
        assert answer.status_code == 200, answer.text
        assert [a["stored"] for a in answer.json()["acks"]] == [True, True, False, True]
        assert answer.json()["stop"] is False
        # a diverged epoch ends the trial: what follows it in the batch is not stored
        batch = [report("w1", 4, diverged=True), report("w1", 5)]
        answer = api.post(f"/trials/{tid}/reports/batch", json={"reports": batch})
        assert [(a["stored"], a["stop"]) for a in answer.json()["acks"]] == [
            (True, True),
            (False, True),
        ]
        assert answer.json()["stop"] is True
        metrics = api.get(f"/trials/{tid}/metrics").json()
        assert [m["epoch"] for m in metrics] == [1, 2, 3, 4]
        closed = api.post(f"/trials/{tid}/reports/batch", json={"reports": [report("w1", 5)]})
        assert closed.status_code == 409
        assert api.post(f"/trials/{tid}/reports/batch", json={"reports": []}).status_code == 422
        too_many = {"reports": [report("w1", e) for e in range(1, 102)]}
        assert api.post(f"/trials/{tid}/reports/batch", json=too_many).status_code == 422
        assert api.post(
            "/trials/999/reports/batch", json={"reports": [report("w1", 1)]}
        ).json() == {"detail": "no trial 999"}
    assert master.service.get_study(study.id).state == "running"


def test_a_study_completes_when_its_last_trial_finishes_with_no_further_claim(
    master: Master,
) -> None:
    """The stage controller runs in the transaction that finishes the last trial: no
    worker has to ask for work for the study to narrow, advance and complete."""
    spec = tiny_spec(
        early_stopping={"rule": "none"},
        stages=[{"trials": 2, "epochs": 1}, {"trials": 1, "epochs": 1}],
    )
    study = master.service.create_study(spec)
    protocol = master.app.state.protocol
    claimed = [protocol.claim(f"w{i}").assignment for i in range(2)]

    def run(job: Any, worker: str, accuracy: float) -> None:
        protocol.start_trial(
            job.trial_id,
            StartRequest(worker_id=worker, attempt=0, params={"learning_rate": 0.1}),
        )
        protocol.record_report(
            job.trial_id,
            EpochReport(worker_id=worker, attempt=0, epoch=1, val_accuracy=accuracy),
        )
        protocol.finish_trial(
            job.trial_id, FinishRequest(worker_id=worker, attempt=0, state="completed")
        )

    run(claimed[0], "w0", 0.4)
    assert [st.state for st in master.service.stages(study.id)] == ["running", "waiting"]
    run(claimed[1], "w1", 0.6)  # the last trial of stage 1: stage 2 opens, narrowed
    stages = master.service.stages(study.id)
    assert [st.state for st in stages] == ["done", "running"]
    assert stages[0].decisions["top_trials"]
    last = protocol.claim("w0").assignment
    run(last, "w0", 0.7)
    with session_scope(master.service.sessions) as s:
        row = s.get(StudyRow, study.id)
        assert row is not None
        assert (row.state, row.finished_at is not None) == ("completed", True)
    assert [st.state for st in master.service.stages(study.id)] == ["done", "done"]


def test_an_epoch_from_a_rolled_back_job_is_stored_by_the_next(master: Master) -> None:
    """The writer remembers the epochs a transaction added (to skip a flush per report);
    one whose job rolled back must not count as stored."""
    master.service.create_study(tiny_spec(stages=[{"trials": 2, "epochs": 3}]))
    protocol = master.app.state.protocol
    with httpx.Client(base_url=master.url + "/api/v1", timeout=60) as api:
        tid = claim_and_start(api, "w1")
    first = EpochReport.model_validate(report("w1", 1))
    gate = threading.Event()
    hold = protocol.writer.submit(lambda batch: gate.wait(10))
    doomed_job = protocol.report_job(tid, first)

    def doomed(batch: Batch) -> None:
        doomed_job(batch)
        raise ConflictError("changed my mind")

    futures = [
        protocol.writer.submit(doomed),
        protocol.writer.submit(protocol.report_job(tid, first)),
    ]
    gate.set()
    hold.result(10)
    with pytest.raises(ConflictError):
        futures[0].result(10)
    assert futures[1].result(10).stored is True
    assert rows(master, EpochMetricRow) == 1
