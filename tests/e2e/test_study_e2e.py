"""A tiny study through real Ray workers, real HTTP and a real SQLite file."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from gridless.common.checkpoints import parse_name, trial_folder
from gridless.common.db import CheckpointRow, TrialRow, session_scope
from gridless.master.launcher import RayLauncher
from tests.conftest import Master, tiny_spec

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def wait_finished(master: Master, study_id: int, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while master.service.progress(study_id).state == "running":
        assert time.monotonic() < deadline, "the study did not finish in time"
        time.sleep(0.2)


def test_tiny_study_through_ray_workers(master: Master, ray_session: object) -> None:
    study = master.service.create_study(tiny_spec())
    launcher = RayLauncher(master.url, str(master.store_root))
    launcher.launch(2)
    try:
        wait_finished(master, study.id)
    finally:
        launcher.shutdown()

    with session_scope(master.service.sessions) as s:
        trials = list(s.scalars(select(TrialRow).where(TrialRow.study_id == study.id)))
        checkpoints = list(s.scalars(select(CheckpointRow)))
    assert len(trials) == 6
    assert {t.state for t in trials} == {"completed"}
    assert {t.worker_id for t in trials} <= {"w1", "w2"}

    # Every trial has its own folder; every recorded checkpoint is on disk with its size
    # and hash, and every checkpoint file on disk is recorded.
    study_dir = master.store_root / "tiny"
    assert sorted(p.name for p in study_dir.iterdir()) == [
        trial_folder(t.number) for t in sorted(trials, key=lambda t: t.number)
    ]
    on_disk = {p.relative_to(master.store_root).as_posix() for p in study_dir.glob("*/*.npz")}
    assert on_disk == {c.path for c in checkpoints}
    for c in checkpoints:
        data = (master.store_root / c.path).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (c.size, c.sha256)
        assert parse_name(Path(c.path).name).score == round(c.score, 4)

    # The best file name of each trial ranks the trials as the API does.
    best_name = {
        t.number: sorted((study_dir / trial_folder(t.number)).iterdir())[-1].name for t in trials
    }
    by_name = sorted(best_name, key=lambda n: best_name[n], reverse=True)
    api = httpx.get(f"{master.url}/api/v1/studies/{study.id}/trials").json()["data"]
    assert [parse_name(best_name[n]).score for n in by_name] == [
        round(t["best_score"], 4) for t in api
    ]
    for t in api:
        assert parse_name(best_name[t["number"]]).score == round(t["best_score"], 4)

    # Stage 2 ran with the narrowed space and more epochs.
    stages = httpx.get(f"{master.url}/api/v1/studies/{study.id}/stages").json()
    assert [s["state"] for s in stages] == ["done", "done"]
    assert stages[1]["epochs"] == 2
    assert stages[0]["decisions"]["decisions"], "the narrowing decisions are recorded"
