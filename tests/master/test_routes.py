"""Every route of the versioned API over a real server: status, fields, exact detail."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gridless.master.app import create_app
from gridless.master.server import BackgroundServer
from tests.conftest import TINY_SPEC, Master, tiny_spec


@pytest.fixture
def api(any_master: Master) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=any_master.url + "/api/v1", timeout=10) as client:
        yield client


def create(api: httpx.Client, **changes: Any) -> dict[str, Any]:
    response = api.post("/studies", json={**TINY_SPEC, **changes})
    assert response.status_code == 201, response.text
    return response.json()


def run_trial(api: httpx.Client, score: float, params: dict[str, Any], worker: str = "w1") -> int:
    job = api.post("/workers/claim", json={"worker_id": worker}).json()["assignment"]
    tid = job["trial_id"]
    assert (
        api.post(
            f"/trials/{tid}/start", json={"worker_id": worker, "attempt": 0, "params": params}
        ).status_code
        == 200
    )
    report = {
        "worker_id": worker,
        "attempt": 0,
        "epoch": 1,
        "val_accuracy": score,
        "train_accuracy": score,
    }
    assert api.post(f"/trials/{tid}/reports", json=report).status_code == 200
    assert (
        api.post(
            f"/trials/{tid}/finish", json={"worker_id": worker, "attempt": 0, "state": "completed"}
        ).status_code
        == 200
    )
    return int(tid)


def test_create_study_returns_201_and_workers_get_its_trials(api: httpx.Client) -> None:
    body = create(api)
    assert (body["id"], body["name"], body["state"], body["metric"]) == (
        1,
        "tiny",
        "running",
        "val_accuracy",
    )
    assert api.post("/workers/claim", json={"worker_id": "w1"}).json()["action"] == "train"


@pytest.mark.parametrize(
    ("spec", "detail"),
    [
        (
            {**TINY_SPEC, "bogus": 1},
            "bogus: unknown key; check its spelling against the documented spec",
        ),
        (
            {**TINY_SPEC, "space": {"lr": {"log_uniform": [0, 1]}}},
            "space.lr: log_uniform: `low > 0` must hold for a log scale, but got low=0, high=1",
        ),
        ({**TINY_SPEC, "sampler": "grid"}, "sampler: Input should be 'random' or 'tpe'"),
        (
            {**TINY_SPEC, "narrowing": {"border": 0.7}},
            "narrowing.border: Input should be less than 0.5",
        ),
    ],
)
def test_create_study_refuses_bad_specs(
    api: httpx.Client, spec: dict[str, Any], detail: str
) -> None:
    response = api.post("/studies", json=spec)
    assert (response.status_code, response.json()) == (422, {"detail": detail})


def test_create_study_twice_is_409(api: httpx.Client) -> None:
    create(api)
    response = api.post("/studies", json=TINY_SPEC)
    assert (response.status_code, response.json()) == (
        409,
        {"detail": "a study named 'tiny' exists"},
    )


def test_create_study_with_a_non_object_body_is_422(api: httpx.Client) -> None:
    response = api.post("/studies", json=[1, 2])
    assert response.status_code == 422
    assert response.json()["detail"].startswith("body:")


def test_pause_resume_stop_and_invalid_transitions(api: httpx.Client) -> None:
    create(api)
    assert api.post("/studies/1/pause").json()["state"] == "paused"
    assert api.post("/workers/claim", json={"worker_id": "w1"}).json()["action"] == "wait"
    again = api.post("/studies/1/pause")
    assert (again.status_code, again.json()) == (
        409,
        {"detail": "cannot pause study 1: it is paused"},
    )
    assert api.post("/studies/1/resume").json()["state"] == "running"
    assert api.post("/workers/claim", json={"worker_id": "w1"}).json()["action"] == "train"
    assert api.post("/studies/1/stop").json()["state"] == "stopped"
    assert api.post("/workers/claim", json={"worker_id": "w1"}).json()["action"] == "stop"
    late = api.post("/studies/1/resume")
    assert (late.status_code, late.json()) == (
        409,
        {"detail": "cannot resume study 1: it is stopped"},
    )
    assert api.post("/studies/9/stop").status_code == 404


def test_stopping_a_study_stops_its_running_trials_at_their_next_report(api: httpx.Client) -> None:
    create(api)
    job = api.post("/workers/claim", json={"worker_id": "w1"}).json()["assignment"]
    tid = job["trial_id"]
    api.post(
        f"/trials/{tid}/start",
        json={"worker_id": "w1", "attempt": 0, "params": {"learning_rate": 0.1}},
    )
    api.post("/studies/1/stop")
    ack = api.post(
        f"/trials/{tid}/reports",
        json={"worker_id": "w1", "attempt": 0, "epoch": 1, "val_accuracy": 0.5},
    )
    assert ack.json() == {"stored": True, "stop": True}
    trial = api.get(f"/trials/{tid}").json()
    assert (trial["state"], trial["error"]) == ("stopped", "the study was stopped")


def test_trial_filters_sort_and_pagination(api: httpx.Client) -> None:
    create(api)
    for score, lr in [(0.5, 0.02), (0.9, 0.5), (0.7, 0.1), (0.6, 0.9)]:
        run_trial(api, score, {"learning_rate": lr, "reg": 1e-4, "hidden": 32})
    page = api.get("/studies/1/trials").json()
    assert [(t["number"], t["rank"], t["stage"]) for t in page["data"]] == [
        (1, 1, 1),
        (2, 2, 1),
        (3, 3, 1),
        (0, 4, 1),
    ]
    by_lr = api.get("/studies/1/trials", params={"sort": "-params.learning_rate"}).json()
    assert [t["params"]["learning_rate"] for t in by_lr["data"]] == [0.9, 0.5, 0.1, 0.02]
    assert all(t["rank"] is None for t in by_lr["data"])
    ranged = api.get(
        "/studies/1/trials", params=[("param", "learning_rate:0.05:0.6"), ("sort", "number")]
    ).json()
    assert ([t["number"] for t in ranged["data"]], ranged["count"]) == ([1, 2], 2)
    open_low = api.get("/studies/1/trials", params={"param": "learning_rate::0.1"}).json()
    assert open_low["count"] == 2
    assert (
        api.get("/studies/1/trials", params={"stage": 1, "state": "completed"}).json()["count"]
        == 4
    )
    assert api.get("/studies/1/trials", params={"stage": 2}).json()["count"] == 0
    second = api.get("/studies/1/trials", params={"limit": 2, "offset": 2}).json()
    assert ([t["number"] for t in second["data"]], second["count"]) == ([3, 0], 4)


@pytest.mark.parametrize(
    ("params", "status", "detail"),
    [
        (
            {"sort": "password"},
            422,
            "sort: 'password' is not sortable; valid: best_score, best_epoch, last_epoch, number, attempt, created_at, finished_at, params.learning_rate, params.reg, params.hidden, metrics.NAME (prefix - to reverse)",
        ),
        (
            {"sort": "params.secret"},
            422,
            "sort: 'params.secret' is not sortable; valid: best_score, best_epoch, last_epoch, number, attempt, created_at, finished_at, params.learning_rate, params.reg, params.hidden, metrics.NAME (prefix - to reverse)",
        ),
        (
            {"sort": "number; DROP TABLE trials"},
            422,
            "sort: 'number; DROP TABLE trials' is not sortable; valid: best_score, best_epoch, last_epoch, number, attempt, created_at, finished_at, params.learning_rate, params.reg, params.hidden, metrics.NAME (prefix - to reverse)",
        ),
        (
            {"param": "learning_rate:abc:1"},
            422,
            "param: 'abc' is not a number in 'learning_rate:abc:1'",
        ),
        (
            {"param": "learning_rate:0:inf"},
            422,
            "param: bounds must be finite, got 'learning_rate:0:inf'",
        ),
        (
            {"param": "learning_rate"},
            422,
            "param: expected name:low:high (a bound may be empty), got 'learning_rate'",
        ),
        (
            {"param": "momentum:0:1"},
            422,
            "param: 'momentum' is not a parameter of this study; valid: hidden, learning_rate, reg",
        ),
        ({"stage": 0}, 422, "query.stage: Input should be greater than or equal to 1"),
        ({"stage": 7}, 404, "study 1 has no stage 7"),
        ({"limit": 5000}, 422, "query.limit: Input should be less than or equal to 1000"),
        ({"limit": -1}, 422, "query.limit: Input should be greater than or equal to 1"),
        ({"offset": -5}, 422, "query.offset: Input should be greater than or equal to 0"),
        ({"sort": "x" * 200}, 422, "query.sort: String should have at most 100 characters"),
    ],
)
def test_bad_trial_queries_are_4xx(
    api: httpx.Client, params: dict[str, Any], status: int, detail: str
) -> None:
    create(api)
    response = api.get("/studies/1/trials", params=params)
    assert (response.status_code, response.json()) == (status, {"detail": detail})


def test_stages_flags_and_warnings(api: httpx.Client) -> None:
    create(api, stages=[{"trials": 3, "epochs": 1}, {"trials": 1, "epochs": 2}])
    run_trial(api, 0.9, {"learning_rate": 0.99, "reg": 1e-4, "hidden": 32})  # on the upper border
    run_trial(api, 0.5, {"learning_rate": 0.05, "reg": 1e-3, "hidden": 20})
    run_trial(api, 0.4, {"learning_rate": 0.03, "reg": 1e-5, "hidden": 40})
    assert api.post("/workers/claim", json={"worker_id": "w1"}).json()["assignment"]["epochs"] == 2
    stages = api.get("/studies/1/stages").json()
    assert [(s["index"], s["state"], s["epochs"]) for s in stages] == [
        (0, "done", 1),
        (1, "running", 2),
    ]
    lr = next(d for d in stages[0]["decisions"]["decisions"] if d["param"] == "learning_rate")
    assert lr["old"] == {"log_uniform": [0.01, 1.0]}
    assert lr["why"] == (
        "on the upper border, too few scored trials (3) to test a trend: extended above it"
    )
    assert stages[1]["space"]["learning_rate"]["log_uniform"][1] == pytest.approx(10.0)
    flags = api.get("/studies/1/flags").json()
    assert (
        flags["data"][0]["message"]
        == "best learning_rate 0.99 is on the upper border of [0.01, 1]; "
        "the next range [0.0125, 10] goes past your range [0.01, 1]"
    )
    assert (flags["data"][0]["stage"], flags["final"]) == (1, [])
    warnings = api.get("/studies/1/warnings").json()
    assert warnings == {"counts": {}, "data": []}


def test_trial_metrics_and_checkpoint_routes(api: httpx.Client, any_master: Master) -> None:
    create(api)
    tid = run_trial(api, 0.8, {"learning_rate": 0.1, "reg": 1e-4, "hidden": 32})
    metrics = api.get(f"/trials/{tid}/metrics").json()
    assert [(m["epoch"], m["val_accuracy"]) for m in metrics] == [(1, 0.8)]
    assert api.get(f"/trials/{tid}/checkpoints").json() == []
    assert api.get(f"/trials/{tid}/metrics", params={"limit": 0}).status_code == 422
    assert api.get("/trials/999/metrics").json() == {"detail": "no trial 999"}
    assert api.get("/trials/999/checkpoints").status_code == 404


def test_checkpoint_paths_outside_the_trial_folder_are_refused(api: httpx.Client) -> None:
    create(api)
    job = api.post("/workers/claim", json={"worker_id": "w1"}).json()["assignment"]
    tid = job["trial_id"]
    api.post(
        f"/trials/{tid}/start",
        json={"worker_id": "w1", "attempt": 0, "params": {"learning_rate": 0.1}},
    )
    report = {
        "worker_id": "w1",
        "attempt": 0,
        "epoch": 1,
        "val_accuracy": 0.5,
        "checkpoint": {
            "relpath": "tiny/000000/../../../etc/passwd",
            "size": 1,
            "sha256": "0" * 64,
        },
    }
    response = api.post(f"/trials/{tid}/reports", json=report)
    assert response.status_code == 422
    assert (
        response.json()["detail"]
        == "checkpoint: path must lie in tiny/000000/, got 'tiny/000000/../../../etc/passwd'"
    )
    assert api.get(f"/trials/{tid}/metrics").json() == []  # nothing half-stored


def test_heartbeat_route(api: httpx.Client) -> None:
    create(api)
    job = api.post("/workers/claim", json={"worker_id": "w1"}).json()["assignment"]
    ok = api.post(
        "/workers/heartbeat", json={"worker_id": "w1", "trial_id": job["trial_id"], "attempt": 0}
    )
    assert ok.json() == {"stored": True, "stop": False}
    stale = api.post(
        "/workers/heartbeat", json={"worker_id": "w1", "trial_id": job["trial_id"], "attempt": 4}
    )
    assert stale.json() == {"stored": False, "stop": True}
    assert (
        api.post(
            "/workers/heartbeat", json={"worker_id": "w1", "trial_id": 999, "attempt": 0}
        ).status_code
        == 404
    )
    assert api.post("/workers/heartbeat", json={"worker_id": "bad id!"}).status_code == 422


def test_worker_routes_without_a_launcher(api: httpx.Client) -> None:
    create(api)
    api.post("/workers/claim", json={"worker_id": "w7"})
    listed = api.get("/workers").json()
    assert (listed["count"], listed["running"]) == (1, [])
    assert (listed["data"][0]["id"], listed["data"][0]["state"]) == ("w7", "busy")
    assert listed["data"][0]["heartbeat_at"] is not None
    launch = api.post("/workers", json={"count": 2})
    assert (launch.status_code, launch.json()) == (
        409,
        {"detail": "this master launches no workers (no launcher configured)"},
    )
    assert api.post("/workers", json={"count": 0}).status_code == 422
    assert api.post("/workers", json={"count": 100000}).status_code == 422
    missing = api.delete("/workers/w99")
    assert (missing.status_code, missing.json()) == (404, {"detail": "no running worker 'w99'"})
    assert api.delete("/workers").json() == {"killed": []}
    assert api.delete("/workers/..%2F..").status_code in (404, 422)


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[str]:
    app = create_app(
        database_url=f"sqlite:///{tmp_path / 'g.db'}",
        store_root=tmp_path / "store",
        token="s3cret",
    )
    with BackgroundServer(app) as server:
        app.state.service.create_study(tiny_spec())
        yield server.url + "/api/v1"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/studies", TINY_SPEC),
        ("POST", "/studies/1/stop", None),
        ("POST", "/workers/claim", {"worker_id": "w1"}),
        ("POST", "/workers", {"count": 1}),
        ("DELETE", "/workers", None),
        ("POST", "/trials/1/reports", {"worker_id": "w1", "attempt": 0, "epoch": 1}),
    ],
)
def test_state_changing_requests_need_the_token(
    guarded: str, method: str, path: str, body: Any
) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"}):
        response = httpx.request(method, guarded + path, json=body, headers=headers)
        assert response.status_code == 401
        assert response.json() == {"detail": "a valid bearer token is required for this request"}
    in_query = httpx.request(method, guarded + path + "?token=s3cret", json=body)
    assert in_query.status_code == 401  # never accepted from a query string


def test_reads_work_without_the_token_and_writes_with_it(guarded: str) -> None:
    assert httpx.get(guarded + "/studies/1").status_code == 200
    response = httpx.post(guarded + "/studies/1/pause", headers={"Authorization": "Bearer s3cret"})
    assert (response.status_code, response.json()["state"]) == (200, "paused")
