"""Stop rules: each ends a study for its reason, stored and shown; through a
real master and worker."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from gridless.master.cli import app
from gridless.worker.loop import run_worker
from tests.conftest import TINY_SPEC, Master

STAGED = """
def main(trial):
    # a search that peaks in its first stage: later stages never beat it
    trial.report(1, val_accuracy=0.9 if trial.stage == 1 else 0.5)
"""


@pytest.fixture
def staged_fn(tmp_path: Path) -> Iterator[None]:
    (tmp_path / "staged_fn.py").write_text(textwrap.dedent(STAGED))
    sys.path.insert(0, str(tmp_path))
    yield
    sys.path.remove(str(tmp_path))
    sys.modules.pop("staged_fn", None)


def run_study(master: Master, spec: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
    with httpx.Client(base_url=master.url + "/api/v1", timeout=60) as api:
        created = api.post("/studies", json=spec)
        assert created.status_code == 201, created.text
        run_worker(master.url, master.store_root, "w1")
        detail = api.get("/studies/1").json()
        trials = api.get("/studies/1/trials", params={"limit": 100}).json()["data"]
    return detail, trials


def shown(master: Master) -> str:
    result = CliRunner().invoke(app, ["status", "1", "--url", master.url], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def test_the_target_ends_the_study_when_a_report_reaches_it(master: Master) -> None:
    spec = {
        **TINY_SPEC,
        "early_stopping": {"rule": "none"},
        "stages": [{"trials": 8, "epochs": 2}, {"trials": 4, "epochs": 2}],
        "stop": {"target": 0.5},
    }
    detail, trials = run_study(master, spec)
    assert detail["state"] == "completed"
    assert detail["stop_reason"].startswith("target reached: val_accuracy ")
    assert ">= 0.5 (trial " in detail["stop_reason"]
    assert len(trials) < 12
    assert [st["state"] for st in detail["stages"]] == ["done", "waiting"]
    assert "ended by its stop rule: target reached" in shown(master)


def test_the_trial_budget_ends_the_study_after_its_last_trial(master: Master) -> None:
    spec = {**TINY_SPEC, "stages": [{"trials": 6, "epochs": 1}], "stop": {"max_trials": 3}}
    detail, trials = run_study(master, spec)
    assert (detail["state"], detail["stop_reason"]) == (
        "completed",
        "trial budget spent: 3 of 3 trials",
    )
    assert len(trials) == 3
    assert all(t["state"] != "stopped" for t in trials)  # they ran to their end


def test_the_time_budget_ends_the_study(master: Master) -> None:
    spec = {**TINY_SPEC, "stages": [{"trials": 30, "epochs": 1}], "stop": {"max_minutes": 0.001}}
    detail, trials = run_study(master, spec)
    assert detail["state"] == "completed"
    assert detail["stop_reason"].startswith("time budget spent: ")
    assert detail["stop_reason"].endswith(" of 0.001 minutes")
    assert len(trials) < 30


def test_patience_ends_a_study_whose_stages_stop_improving(
    master: Master, staged_fn: None
) -> None:
    spec = {
        "name": "staged",
        "train": "staged_fn:main",
        "space": {"x": {"uniform": [0.0, 1.0]}},
        "stages": [{"trials": 3, "epochs": 1}] * 3,
        "stop": {"patience_stages": 1},
    }
    detail, trials = run_study(master, spec)
    assert detail["state"] == "completed"
    assert detail["stop_reason"] == (
        "no progress: the best val_accuracy of the last 1 stage(s), 0.5, does not beat 0.9 "
        "from before them"
    )
    assert [st["state"] for st in detail["stages"]] == ["done", "done", "waiting"]
    assert len(trials) == 6


@pytest.mark.parametrize(
    ("stop", "where"),
    [
        ({"max_trials": 0}, "stop.max_trials"),
        ({"max_minutes": -1}, "stop.max_minutes"),
        ({"patience_stages": 0}, "stop.patience_stages"),
        ({"target": "high"}, "stop.target"),
        ({"deadline": 3}, "stop.deadline: unknown key"),
    ],
)
def test_bad_stop_rules_are_a_422_naming_the_field(
    master: Master, stop: dict[str, Any], where: str
) -> None:
    with httpx.Client(base_url=master.url + "/api/v1", timeout=60) as api:
        answer = api.post("/studies", json={**TINY_SPEC, "stop": stop})
        assert answer.status_code == 422
        assert answer.json()["detail"].startswith(where)
        assert api.get("/studies").json()["count"] == 0
