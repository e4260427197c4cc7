"""Editing the space between stages: the next stage opens with the edited
ranges instead of its narrowing; a bad edit is a 422 and changes nothing."""

from __future__ import annotations

from pathlib import Path

import httpx
import yaml
from typer.testing import CliRunner

from gridless.common.space import parse_space
from gridless.master.cli import app
from gridless.worker.loop import run_worker
from tests.conftest import Master, tiny_spec

EDITED = {
    "learning_rate": {"log_uniform": [0.05, 0.2]},
    "reg": {"log_uniform": [1e-5, 1e-4]},
    "hidden": {"int_log_uniform": [20, 30]},
}


def test_the_next_stage_opens_with_the_edited_ranges(master: Master, tmp_path: Path) -> None:
    master.service.create_study(
        tiny_spec(
            early_stopping={"rule": "none"},
            stages=[{"trials": 4, "epochs": 1}, {"trials": 3, "epochs": 1}],
        )
    )
    run_worker(master.url, master.store_root, "w1", max_trials=1)  # stage 1 has begun
    space_file = tmp_path / "space.yaml"
    space_file.write_text(yaml.safe_dump({"space": EDITED}))
    edited = CliRunner().invoke(app, ["space", "1", str(space_file), "--url", master.url])
    assert edited.exit_code == 0, edited.output
    assert "the next stage opens with these ranges instead of its narrowing" in edited.output
    run_worker(master.url, master.store_root, "w1")
    with httpx.Client(base_url=master.url + "/api/v1", timeout=60) as api:
        detail = api.get("/studies/1").json()
        trials = api.get("/studies/1/trials", params={"limit": 100}).json()["data"]
    assert detail["state"] == "completed"
    first, second = detail["stages"]
    assert second["space"] == EDITED
    assert "set by PATCH" in first["decisions"]["edited"]
    assert "next_space" not in detail["spec"]
    space = parse_space(EDITED)
    later = [t for t in trials if t["stage"] == 2]
    assert len(later) == 3
    for trial in later:
        assert all(space[k].contains(v) for k, v in trial["params"].items())


def test_an_edit_before_the_first_trial_sets_the_running_stage(master: Master) -> None:
    master.service.create_study(tiny_spec())
    with httpx.Client(base_url=master.url + "/api/v1", timeout=60) as api:
        answer = api.patch("/studies/1/space", json={"space": EDITED})
        assert answer.status_code == 200, answer.text
        assert answer.json()["stages"][0]["space"] == EDITED


def test_bad_edits_are_a_422_and_change_nothing(master: Master) -> None:
    master.service.create_study(tiny_spec())
    with httpx.Client(base_url=master.url + "/api/v1", timeout=60) as api:
        before = api.get("/studies/1").json()["stages"]
        empty = {**EDITED, "reg": {"log_uniform": [1e-3, 1e-5]}}
        answer = api.patch("/studies/1/space", json={"space": empty})
        assert answer.status_code == 422
        assert answer.json()["detail"].startswith("space.reg: ")
        extra = {**EDITED, "dropout": {"uniform": [0.0, 0.5]}}
        answer = api.patch("/studies/1/space", json={"space": extra})
        assert answer.json() == {
            "detail": "space.dropout: the edit must give the study's parameters (hidden, "
            "learning_rate, reg), no more and no fewer"
        }
        assert api.patch("/studies/9/space", json={"space": EDITED}).status_code == 404
        assert api.get("/studies/1").json()["stages"] == before
