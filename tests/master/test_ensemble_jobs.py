"""Ensembles as a job: the POST answers with a job before the ensembles are
built, the job ends done (its report the study's latest) or failed (with the hook's
words), a master's restart fails the jobs it left, and on Ray the work runs in a
worker's process, not the master's.

The user's `predict` hook waits at a gate (a file the test creates), so a test sees the
job while it runs.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from gridless.common.errors import GridlessError
from gridless.common.metric import Metric
from gridless.common.spec import parse_spec
from gridless.master import launcher
from gridless.master.cli import app
from gridless.worker.ensembles import TopTrial, evaluate_user_ensembles
from gridless.worker.loop import run_worker
from tests.conftest import Master
from tests.jobs import wait_for_job
from tests.net import wait_for

HOOKS = """
import pathlib
import time

import numpy as np

GATE = pathlib.Path(GATE_PATH)


def main(trial):
    for epoch in trial.epochs():
        trial.report(epoch, val_accuracy=trial.params["x"])
        trial.save({"w": np.array([trial.params["x"], 1.0 - trial.params["x"]])})


def predict(state, params, split):
    while not GATE.exists():  # the test opens the gate once it saw the job at work
        time.sleep(0.02)
    return np.tile(state["w"], (8, 1))


def evaluate(outputs, split):
    return {"accuracy": float(outputs[:, 0].mean())}


def broken(outputs, split):
    raise RuntimeError("labels.npy is missing")
"""


@dataclass
class Study:
    """A finished `train:` study of three trials on a master, and its hooks' gate."""

    master: Master
    module: str
    gate: Path

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.master.url + "/api/v1", timeout=60)

    def post(self, **body: Any) -> dict[str, Any]:
        with self.api() as api:
            answer = api.post("/studies/1/ensembles", json={"k": 2, **body})
        assert answer.status_code == 202, answer.text
        assert answer.headers["location"] == answer.json()["url"]
        job: dict[str, Any] = answer.json()
        return job

    def job(self, job: dict[str, Any]) -> dict[str, Any]:
        with self.api() as api:
            answer: dict[str, Any] = api.get(f"/studies/1/ensembles/jobs/{job['id']}").json()
        return answer


def make_study(root: Path, *, launcher: str) -> Master:
    """Write the hooks into `root`, run a study of them, return its master (serving)."""
    module = f"gated_{uuid.uuid4().hex[:8]}"
    gate = root / "gate"
    (root / f"{module}.py").write_text(
        textwrap.dedent(HOOKS).replace("GATE_PATH", repr(str(gate))), encoding="utf-8"
    )
    master = Master(root / "run", launcher=launcher, python_path=[str(root)])
    master.server.start()
    master.service.create_study(
        parse_spec(
            {
                "name": "gated",
                "train": f"{module}:main",
                "predict": f"{module}:predict",
                "evaluate": f"{module}:evaluate",
                "space": {"x": {"uniform": [0.1, 0.9]}},
                "stages": [{"trials": 3, "epochs": 1}],
                "early_stopping": {"rule": "none"},
            }
        )
    )
    run_worker(master.url, master.store_root, "t1")
    return master


@pytest.fixture
def study(tmp_path: Path) -> Iterator[Study]:
    """The study on a master whose jobs run in threads of this process (the fake)."""
    sys.path.insert(0, str(tmp_path))
    master = make_study(tmp_path, launcher="thread")
    module = master.service.get_study(1).spec["predict"].partition(":")[0]
    yield Study(master, module, tmp_path / "gate")
    (tmp_path / "gate").touch()  # a job still waiting ends
    master.app.state.ensemble_jobs.join(30)
    master.server.stop()
    sys.path.remove(str(tmp_path))
    sys.modules.pop(module, None)


def test_the_post_answers_with_a_job_before_the_ensembles_are_built(study: Study) -> None:
    job = study.post()
    assert job["state"] in ("queued", "running")
    assert job["url"] == f"/api/v1/studies/1/ensembles/jobs/{job['id']}"
    assert (job["report"], job["error"], job["options"]["k"]) == (None, None, 2)
    running = wait_for(
        lambda: (j := study.job(job))["state"] == "running" and j, 30, "the job to run"
    )
    assert running["started_at"] is not None
    with study.api() as api:
        # the hook still waits: nothing is saved yet
        assert api.get("/studies/1/ensembles").status_code == 404
        listed = api.get("/studies/1/ensembles/jobs").json()
        assert (listed["count"], listed["data"][0]["id"]) == (1, job["id"])
        study.gate.touch()
        done = wait_for_job(api, job)
        latest = api.get("/studies/1/ensembles").json()
    assert (done["state"], done["error"]) == ("done", None)
    assert done["report"] == latest
    assert [(r["kind"], r["members"]) for r in latest["rows"]] == [
        ("single", 1),
        ("single", 1),
        ("top_k", 2),
        # one epoch: each trial keeps one checkpoint, so no ensemble of its epochs
    ]
    # what the synchronous route computed on the same members
    _, chosen = study.master.service.ensemble_inputs(1, 2)
    store = Path(study.master.store_root)
    module = sys.modules[study.module]
    direct = evaluate_user_ensembles(
        predict=module.predict,
        evaluate=module.evaluate,
        metric=Metric("val_accuracy", "max"),
        top=[TopTrial(t.number, t.params, store / path, t.epochs) for t, path in chosen],
        epoch_checkpoints=[(1, store / chosen[0][1])],
        k=2,
    )
    assert latest["rows"] == direct.to_json()["rows"]
    assert latest["notes"] == direct.notes


def test_a_failing_hook_fails_the_job_with_its_message(study: Study) -> None:
    study.gate.touch()
    job = study.post(evaluate=f"{study.module}:broken")
    with study.api() as api:
        failed = wait_for_job(api, job)
        assert api.get("/studies/1/ensembles").status_code == 404  # nothing was saved
    assert (failed["state"], failed["report"]) == ("failed", None)
    assert failed["error"] == "evaluate(split='val') failed: RuntimeError: labels.npy is missing"
    assert failed["finished_at"] is not None


def test_what_the_post_can_check_is_still_a_4xx(study: Study) -> None:
    with study.api() as api:
        assert api.post("/studies/1/ensembles", json={"k": 0}).status_code == 422
        assert api.get("/studies/9/ensembles/jobs/1").json() == {"detail": "no study 9"}
        assert api.get("/studies/1/ensembles/jobs/99").json() == {
            "detail": "study 1 has no ensemble job 99"
        }
        assert api.get("/studies/1/ensembles/jobs").json() == {"data": [], "count": 0}


def test_gridless_ensemble_follows_the_job_to_its_table(study: Study) -> None:
    study.gate.touch()
    shown = CliRunner().invoke(
        app, ["ensemble", "1", "-k", "2", "--url", study.master.url], env={"COLUMNS": "200"}
    )
    assert shown.exit_code == 0, shown.output
    assert "ensembles of study 1: validation chooses, test reports" in shown.output
    assert "top 2 trials" in shown.output
    assert "test split: 8 examples, never used to choose" in shown.output
    refused = CliRunner().invoke(
        app, ["ensemble", "1", "--evaluate", f"{study.module}:broken", "--url", study.master.url]
    )
    assert isinstance(refused.exception, GridlessError)
    assert str(refused.exception) == (
        "ensemble job 2 failed: evaluate(split='val') failed: RuntimeError: labels.npy is missing"
    )


def test_a_restarted_master_fails_the_job_it_left_and_keeps_failing_it(study: Study) -> None:
    job = study.post()
    wait_for(lambda: study.job(job)["state"] == "running", 30, "the job to run")
    study.master.server.stop()  # the master goes; its job's hook still waits
    again = Master(study.master.root)
    again.server.start()
    try:
        with httpx.Client(base_url=again.url + "/api/v1", timeout=60) as api:
            left = api.get(f"/studies/1/ensembles/jobs/{job['id']}").json()
            assert (left["state"], left["error"]) == (
                "failed",
                "the master stopped before this job finished; POST again to rebuild",
            )
            # the old master's job answers late: a failed job stays failed, unsaved
            study.gate.touch()
            study.master.app.state.ensemble_jobs.join(30)
            assert api.get(f"/studies/1/ensembles/jobs/{job['id']}").json() == left
            assert api.get("/studies/1/ensembles").status_code == 404
    finally:
        again.server.stop()


def test_the_launcher_starts_on_a_thread_that_outlives_the_jobs(
    study: Study, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`gridless master` makes its launcher, and so starts Ray, on first use; Ray's
    processes die with the thread that started them (Linux's PR_SET_PDEATHSIG), so the
    thread a job starts it on lives on after the job."""
    made_on: list[threading.Thread] = []

    class Recording(launcher.ThreadLauncher):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            made_on.append(threading.current_thread())
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(launcher, "ThreadLauncher", Recording)
    study.gate.touch()
    with study.api() as api:
        for _ in range(2):
            assert wait_for_job(api, study.post())["state"] == "done"
    assert len(made_on) == 1
    assert made_on[0] is not threading.main_thread()
    study.master.app.state.ensemble_jobs.join(30)
    assert made_on[0].is_alive()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.ray
@pytest.mark.slow
def test_on_ray_the_job_runs_in_a_worker_process_then_frees_its_slot(
    tmp_path: Path, ray_session: Any
) -> None:
    sys.path.insert(0, str(tmp_path))  # for the trials, run in this process
    master = make_study(tmp_path, launcher="ray")  # the job imports the hooks on Ray
    study = Study(master, "", tmp_path / "gate")
    try:
        job = study.post()
        running = wait_for(
            lambda: (j := study.job(job))["state"] == "running" and j, 120, "the job to run"
        )
        assert running["pid"] != os.getpid()  # not the master's process
        assert running["host"] == socket.gethostname()
        assert _alive(running["pid"])
        study.gate.touch()
        with study.api() as api:
            done = wait_for_job(api, job)
        assert (done["state"], done["error"], done["pid"]) == ("done", None, running["pid"])
        assert [r["kind"] for r in done["report"]["rows"]] == ["single", "single", "top_k"]
        wait_for(lambda: not _alive(running["pid"]), 60, "the job's actor to end")
        # a worker that dies mid-job fails it
        study.gate.unlink()
        job = study.post()
        running = wait_for(
            lambda: (j := study.job(job))["state"] == "running" and j, 120, "the job to run"
        )
        os.kill(running["pid"], signal.SIGKILL)
        with study.api() as api:
            failed = wait_for_job(api, job)
        assert (failed["state"], failed["error"]) == (
            "failed",
            "the worker running the job died (or was stopped with its master)",
        )
    finally:
        master.app.state.workers.shutdown()
        master.server.stop()
        sys.path.remove(str(tmp_path))
