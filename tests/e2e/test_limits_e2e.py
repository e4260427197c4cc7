"""Per-trial limits with real Ray workers: a function stuck in one epoch past
`max_trial_seconds` and one allocating past `max_trial_memory_mb` are stopped and
recorded with the limit and the measured value, and the study completes."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import httpx
import pytest

from gridless.common.spec import parse_spec
from tests.conftest import Master, run_with_ray
from tests.worker.test_limits import FUNCTIONS

pytestmark = [pytest.mark.slow, pytest.mark.ray]


def test_runaway_trials_are_stopped_and_the_study_completes(
    master: Master, tmp_path: Path, ray_session: object
) -> None:
    user = tmp_path / "user"
    user.mkdir()
    (user / "limit_functions.py").write_text(textwrap.dedent(FUNCTIONS))
    spec = parse_spec(
        {
            "name": "runaway",
            "train": "limit_functions:main",
            "metric": "val_loss",
            "space": {"kind": {"choice": ["ok", "sleep", "alloc", "crash"]}},
            "stages": [{"trials": 4, "epochs": 2}],
            "enqueue": [{"kind": k} for k in ["sleep", "alloc", "ok", "ok"]],
            "early_stopping": {"rule": "none"},
            "max_trial_seconds": 20,
            "max_trial_memory_mb": 300,
        }
    )
    study_id = run_with_ray(master, spec, workers=2, python_path=[str(user)], timeout_s=240)
    assert master.service.progress(study_id).state == "completed"
    answer = httpx.get(f"{master.url}/api/v1/studies/{study_id}/trials", params={"sort": "number"})
    sleep, alloc, *fine = answer.json()["data"]
    assert sleep["state"] == "stopped"
    ran = re.fullmatch(
        r"time limit: the trial ran ([\d.]+) s, past max_trial_seconds 20", sleep["error"]
    )
    assert ran, sleep["error"]
    assert 20 <= float(ran[1]) < 60
    assert alloc["state"] == "stopped"
    held = re.fullmatch(
        r"memory limit: the trial's process held (\d+) MiB resident, past max_trial_memory_mb 300",
        alloc["error"],
    )
    assert held, alloc["error"]
    assert 300 < int(held[1]) < 1000
    assert [(t["state"], t["last_epoch"]) for t in fine] == [("completed", 2), ("completed", 2)]
    # the workers lived on: each of them is still known and none is dead
    workers = httpx.get(f"{master.url}/api/v1/workers").json()["data"]
    assert {w["state"] for w in workers} <= {"idle", "exited"}
