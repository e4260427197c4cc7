"""Per-trial limits: `max_trial_seconds` and `max_trial_memory_mb` through a real
master over HTTP and the real worker loop in this process, whose limited trials run in real
child processes (worker/limits.py); the Ray runs are in tests/e2e/test_limits_e2e.py."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest

from gridless.common.spec import parse_spec
from gridless.worker.limits import TrialLimits, process_tree_rss_mb
from gridless.worker.loop import run_worker
from tests.conftest import TINY_SPEC, Master

FUNCTIONS = """
import os
import signal
import time

import numpy as np


def main(trial):
    kind = trial.params["kind"]
    print(f"kind {kind} starts", flush=True)
    hog = []
    for epoch in trial.epochs():
        if kind == "sleep":
            time.sleep(600)  # stuck inside one long epoch: no report comes
        elif kind == "alloc":
            for _ in range(75):  # up to 1.5 GB, 20 MB at a time, written
                hog.append(np.ones(20 * 2**20 // 8))
                time.sleep(0.02)
        elif kind == "crash":
            os.kill(os.getpid(), signal.SIGKILL)
        trial.report(epoch, val_loss=1.0 / epoch)
        trial.save({"epoch": epoch})
"""


@pytest.fixture
def functions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    folder = tmp_path / "user"
    folder.mkdir()
    (folder / "limit_functions.py").write_text(textwrap.dedent(FUNCTIONS))
    monkeypatch.syspath_prepend(str(folder))  # the child process inherits the path
    return "limit_functions:main"


def run_kinds(master: Master, train: str, kinds: list[str], **limits: Any) -> list[dict[str, Any]]:
    spec = parse_spec(
        {
            "name": "limits",
            "train": train,
            "metric": "val_loss",
            "space": {"kind": {"choice": ["ok", "sleep", "alloc", "crash"]}},
            "stages": [{"trials": len(kinds), "epochs": 2}],
            "enqueue": [{"kind": k} for k in kinds],
            "early_stopping": {"rule": "none"},
            **limits,
        }
    )
    study = master.service.create_study(spec)
    run_worker(master.url, master.store_root, "t1", max_trials=len(kinds))
    assert master.service.progress(study.id).state == "completed"
    answer = httpx.get(f"{master.url}/api/v1/studies/{study.id}/trials", params={"sort": "number"})
    return answer.json()["data"]  # type: ignore[no-any-return]


def trial_log(master: Master, trial_id: int) -> str:
    return httpx.get(f"{master.url}/api/v1/trials/{trial_id}/log").text


@pytest.mark.parametrize(
    ("seconds", "memory", "elapsed", "rss", "expected"),
    [
        (None, None, 1e9, 1e9, None),
        (10.0, None, 10.0, None, None),  # on the budget is within it
        (10.0, None, 10.05, None, "time limit: the trial ran 10.1 s, past max_trial_seconds 10"),
        (None, 500, 3.0, 500.0, None),
        (
            None,
            500,
            3.0,
            612.4,
            "memory limit: the trial's process held 613 MiB resident, past "
            "max_trial_memory_mb 500",
        ),
        (None, 500, 3.0, None, None),  # memory not readable: not enforced
        (2.0, 500, 5.0, 900.0, "time limit: the trial ran 5.0 s, past max_trial_seconds 2"),
    ],
)
def test_limits_name_what_was_passed_and_the_measured_value(
    seconds: float | None, memory: int | None, elapsed: float, rss: float | None, expected: str
) -> None:
    assert TrialLimits(seconds, memory).exceeded(elapsed, rss) == expected


def test_the_memory_of_a_process_tree_counts_its_children() -> None:
    code = textwrap.dedent(
        """
        import subprocess, sys, time
        import numpy as np
        block = np.ones(150 * 2**20 // 8)
        child = subprocess.Popen([sys.executable, "-c",
            "import numpy as np, time; b = np.ones(100 * 2**20 // 8); print('up', flush=True); time.sleep(60)"],
            stdout=subprocess.PIPE)
        child.stdout.readline()
        print("ready", flush=True)
        time.sleep(60)
        """
    )
    with subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, start_new_session=True
    ) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == b"ready"
            measured = process_tree_rss_mb(proc.pid)
            assert measured is not None
            assert measured > 250, measured  # 150 MiB here and 100 MiB in its child
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
    assert process_tree_rss_mb(proc.pid) is None  # gone


def test_a_function_stuck_in_one_epoch_is_stopped_at_its_time_limit(
    master: Master, functions: str
) -> None:
    trials = run_kinds(master, functions, ["sleep", "ok"], max_trial_seconds=3)
    stuck, fine = trials
    assert stuck["state"] == "stopped"
    found = re.fullmatch(
        r"time limit: the trial ran ([\d.]+) s, past max_trial_seconds 3", stuck["error"]
    )
    assert found, stuck["error"]
    # cut short: the epoch sleeps 600 s (how soon after 3 s depends on the machine's load)
    assert 3.0 <= float(found[1]) < 600
    assert stuck["last_epoch"] == 0
    assert "kind sleep starts" in trial_log(master, stuck["id"])  # the child's output
    assert "time limit" in trial_log(master, stuck["id"])
    # the next trial ran in a fresh child process on the same worker, to its end
    assert (fine["state"], fine["last_epoch"], fine["error"]) == ("completed", 2, None)
    assert fine["worker_id"] == stuck["worker_id"] == "t1"
    detail = httpx.get(f"{master.url}/api/v1/trials/{fine['id']}").json()
    assert [m["epoch"] for m in detail["metrics"]] == [1, 2]
    assert len(detail["checkpoints"]) >= 1
    assert "kind ok starts" in trial_log(master, fine["id"])


def test_a_function_that_allocates_past_its_memory_limit_is_stopped(
    master: Master, functions: str
) -> None:
    trials = run_kinds(master, functions, ["alloc", "ok"], max_trial_memory_mb=300)
    hog, fine = trials
    assert hog["state"] == "stopped"
    found = re.fullmatch(
        r"memory limit: the trial's process held (\d+) MiB resident, past max_trial_memory_mb 300",
        hog["error"],
    )
    assert found, hog["error"]
    assert 300 < int(found[1]) < 1000  # stopped on the way, not after 1.5 GB
    assert hog["last_epoch"] == 0
    assert fine["state"] == "completed"


def test_a_trial_process_killed_from_outside_fails_and_says_so(
    master: Master, functions: str
) -> None:
    crashed, fine = run_kinds(master, functions, ["crash", "ok"], max_trial_seconds=60)
    assert crashed["state"] == "failed"
    assert crashed["error"].startswith("the trial's process ended with signal SIGKILL")
    assert fine["state"] == "completed"


def test_a_built_in_trainer_is_stopped_at_its_time_limit(master: Master) -> None:
    spec = parse_spec(
        {
            **TINY_SPEC,
            "space": {
                "learning_rate": {"log_uniform": [1e-3, 1e-2]},
                "reg": {"log_uniform": [1e-6, 1e-5]},
                "hidden": {"int_log_uniform": [256, 512]},
            },
            "stages": [{"trials": 1, "epochs": 5000}],
            "early_stopping": {"rule": "none"},
            "max_trial_seconds": 15,  # loading digits takes a few seconds of it
        }
    )
    study = master.service.create_study(spec)
    run_worker(master.url, master.store_root, "t1", max_trials=1)
    assert master.service.progress(study.id).state == "completed"
    (trial,) = httpx.get(f"{master.url}/api/v1/studies/{study.id}/trials").json()["data"]
    assert trial["state"] == "stopped"
    assert trial["error"].startswith("time limit: the trial ran "), trial["error"]
    assert 0 < trial["last_epoch"] < 5000  # epochs were reported before the limit
    assert trial["best_score"] is not None
