"""Known-good configurations first (`enqueue:`): the first stage's first trials
run exactly them, through a real master and worker; a bad one is a 422."""

from __future__ import annotations

import httpx
from typer.testing import CliRunner

from gridless.master.cli import app
from gridless.worker.loop import run_worker
from tests.conftest import TINY_SPEC, Master

GOOD = {"learning_rate": 0.3, "reg": 1e-4, "hidden": 32}
BEYOND = {"learning_rate": 3.0, "reg": 1e-4, "hidden": 100}  # outside lr and hidden ranges


def test_enqueued_configurations_run_first_with_exactly_their_values(master: Master) -> None:
    spec = {
        **TINY_SPEC,
        "early_stopping": {"rule": "none"},
        "stages": [{"trials": 4, "epochs": 1}],
        "enqueue": [GOOD, BEYOND],
    }
    with httpx.Client(base_url=master.url + "/api/v1", timeout=60) as api:
        assert api.post("/studies", json=spec).status_code == 201
        run_worker(master.url, master.store_root, "w1")
        trials = {t["number"]: t for t in api.get("/studies/1/trials?sort=number").json()["data"]}
    assert (trials[0]["params"], trials[0]["origin"]) == (GOOD, "enqueued")
    assert (trials[1]["params"], trials[1]["origin"]) == (BEYOND, "enqueued")
    assert trials[2]["params"] not in (GOOD, BEYOND)  # then the search samples
    assert trials[2]["origin"] is None
    assert all(t["state"] in ("completed", "diverged") for t in trials.values())
    shown = CliRunner().invoke(app, ["status", "1", "--url", master.url], env={"COLUMNS": "220"})
    assert shown.exit_code == 0, shown.output
    assert shown.output.count("(enqueued)") == 2


def test_an_enqueued_configuration_with_an_unknown_parameter_is_a_422(master: Master) -> None:
    spec = {**TINY_SPEC, "enqueue": [{**GOOD, "dropout": 0.1}]}
    with httpx.Client(base_url=master.url + "/api/v1", timeout=60) as api:
        answer = api.post("/studies", json=spec)
        assert answer.status_code == 422
        assert answer.json() == {
            "detail": "enqueue[0].dropout: not a parameter of the space (hidden, "
            "learning_rate, reg)"
        }
        assert api.get("/studies").json()["count"] == 0


def test_a_configuration_posted_to_a_running_study_runs_next_marked_enqueued(
    master: Master,
) -> None:
    spec = {
        **TINY_SPEC,
        "early_stopping": {"rule": "none"},
        "stages": [{"trials": 3, "epochs": 1}],
    }
    with httpx.Client(base_url=master.url + "/api/v1", timeout=60) as api:
        assert api.post("/studies", json=spec).status_code == 201
        queued = api.post("/studies/1/trials", json={"params": BEYOND})
        assert (queued.status_code, queued.json()) == (201, {"study_id": 1, "queued": 1})
        unknown = api.post("/studies/1/trials", json={"params": {**GOOD, "width": 2}})
        assert unknown.status_code == 422
        assert unknown.json()["detail"].startswith("params[0].width: not a parameter")
        missing = api.post("/studies/1/trials", json={"params": {"learning_rate": 0.1}})
        assert missing.json() == {"detail": "params[0]: gives no value for hidden, reg"}
        assert api.post("/studies/9/trials", json={"params": GOOD}).status_code == 404
        run_worker(master.url, master.store_root, "w1")
        trials = api.get("/studies/1/trials", params={"sort": "number"}).json()["data"]
        assert (trials[0]["params"], trials[0]["origin"]) == (BEYOND, "enqueued")
        assert [t["origin"] for t in trials[1:]] == [None, None]
        assert "queued" in api.get("/studies/1").json()["spec"]
        done = api.post("/studies/1/trials", json={"params": GOOD})
        assert done.json() == {
            "detail": "study 1 is completed: extend it (POST .../stages) to run more trials"
        }
