"""Routes over a real HTTP server and a fresh SQLite file per test: status, fields, detail."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import Master, tiny_spec


@pytest.fixture
def api(any_master: Master) -> httpx.Client:
    any_master.service.create_study(tiny_spec())
    with httpx.Client(base_url=any_master.url + "/api/v1", timeout=10) as client:
        yield client  # type: ignore[misc]


def claim(api: httpx.Client, worker: str = "w1") -> dict[str, Any]:
    response = api.post("/workers/claim", json={"worker_id": worker})
    assert response.status_code == 200
    return response.json()


def report(epoch: int = 1, **changes: Any) -> dict[str, Any]:
    body = {
        "worker_id": "w1",
        "attempt": 0,
        "epoch": epoch,
        "train_loss": 1.0,
        "train_accuracy": 0.5,
        "val_loss": 1.1,
        "val_accuracy": 0.4,
        "seconds": 0.01,
    }
    return {**body, **changes}


def start(api: httpx.Client, trial_id: int) -> None:
    response = api.post(
        f"/trials/{trial_id}/start",
        json={"worker_id": "w1", "attempt": 0, "params": {"learning_rate": 0.1}},
    )
    assert response.status_code == 200


def test_health(api: httpx.Client) -> None:
    assert api.get("/health").json() == {"status": "ok"}


def test_claim_hands_out_a_trial_of_the_first_stage(api: httpx.Client) -> None:
    answer = claim(api)
    assert answer["action"] == "train"
    job = answer["assignment"]
    assert (job["study"], job["trial_number"], job["epochs"], job["attempt"]) == ("tiny", 0, 1, 0)
    assert job["space"]["learning_rate"] == {"log_uniform": [0.01, 1.0]}
    assert claim(api)["assignment"]["trial_number"] == 1


def test_claim_says_wait_when_the_stage_is_fully_handed_out(api: httpx.Client) -> None:
    for _ in range(4):
        claim(api)
    assert claim(api)["action"] == "wait"


def test_report_is_stored_once_and_repeats_are_noops(api: httpx.Client) -> None:
    trial_id = claim(api)["assignment"]["trial_id"]
    start(api, trial_id)
    first = api.post(f"/trials/{trial_id}/reports", json=report())
    again = api.post(f"/trials/{trial_id}/reports", json=report(val_accuracy=0.9))
    assert (first.status_code, first.json()) == (200, {"stored": True, "stop": False})
    assert (again.status_code, again.json()) == (200, {"stored": False, "stop": False})
    detail = api.get(f"/trials/{trial_id}").json()
    assert [m["val_accuracy"] for m in detail["metrics"]] == [0.4]
    assert detail["best_score"] == 0.4


def test_report_for_a_finished_trial_is_409(api: httpx.Client) -> None:
    trial_id = claim(api)["assignment"]["trial_id"]
    start(api, trial_id)
    done = api.post(
        f"/trials/{trial_id}/finish", json={"worker_id": "w1", "attempt": 0, "state": "completed"}
    )
    assert done.status_code == 200
    late = api.post(f"/trials/{trial_id}/reports", json=report(epoch=2))
    assert (late.status_code, late.json()) == (409, {"detail": f"trial {trial_id} is completed"})


def test_report_with_a_stale_attempt_is_409(api: httpx.Client) -> None:
    trial_id = claim(api)["assignment"]["trial_id"]
    start(api, trial_id)
    response = api.post(f"/trials/{trial_id}/reports", json=report(attempt=3))
    assert response.status_code == 409
    assert response.json() == {"detail": f"trial {trial_id} attempt 3 is superseded by 0"}


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (report(val_accuracy=1.5), "body.val_accuracy: Input should be less than or equal to 1"),
        (report(epoch=0), "body.epoch: Input should be greater than or equal to 1"),
        ({**report(), "extra": 1}, "body.extra: Extra inputs are not permitted"),
    ],
)
def test_malformed_reports_are_422(api: httpx.Client, body: dict[str, Any], detail: str) -> None:
    trial_id = claim(api)["assignment"]["trial_id"]
    response = api.post(f"/trials/{trial_id}/reports", json=body)
    assert (response.status_code, response.json()) == (422, {"detail": detail})


def test_non_finite_numbers_in_a_report_are_422_not_500(api: httpx.Client) -> None:
    trial_id = claim(api)["assignment"]["trial_id"]
    raw = '{"worker_id": "w1", "attempt": 0, "epoch": 1, "train_loss": NaN}'
    response = api.post(
        f"/trials/{trial_id}/reports", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["detail"].startswith("body.train_loss:")


def test_diverged_report_marks_the_trial_diverged(api: httpx.Client) -> None:
    trial_id = claim(api)["assignment"]["trial_id"]
    start(api, trial_id)
    response = api.post(f"/trials/{trial_id}/reports", json=report(train_loss=None, diverged=True))
    assert response.status_code == 200
    assert api.get(f"/trials/{trial_id}").json()["state"] == "diverged"


@pytest.mark.parametrize(
    ("path", "status", "detail"),
    [
        ("/studies/99", 404, "no study 99"),
        ("/studies/99/trials", 404, "no study 99"),
        ("/trials/99", 404, "no trial 99"),
        ("/studies/0", 422, "path.study_id: Input should be greater than or equal to 1"),
        (
            "/studies/abc",
            422,
            "path.study_id: Input should be a valid integer, unable to parse string as an integer",
        ),
        (
            "/studies/1/trials?limit=0",
            422,
            "query.limit: Input should be greater than or equal to 1",
        ),
        (
            "/studies/1/trials?limit=100000",
            422,
            "query.limit: Input should be less than or equal to 1000",
        ),
        (
            "/studies/1/trials?offset=-1",
            422,
            "query.offset: Input should be greater than or equal to 0",
        ),
        (
            "/studies/1/trials?state=bogus",
            422,
            "query.state: Input should be 'pending', 'running', 'completed', 'stopped', 'diverged', 'failed' or 'lost'",
        ),
    ],
)
def test_bad_reads_are_4xx_with_detail(
    api: httpx.Client, path: str, status: int, detail: str
) -> None:
    response = api.get(path)
    assert (response.status_code, response.json()) == (status, {"detail": detail})


def test_trials_are_ranked_best_first_with_ties_by_number(api: httpx.Client) -> None:
    scores = [0.5, 0.9, 0.5, None]
    for score in scores:
        trial_id = claim(api)["assignment"]["trial_id"]
        start(api, trial_id)
        if score is not None:
            api.post(f"/trials/{trial_id}/reports", json=report(val_accuracy=score))
    page = api.get("/studies/1/trials").json()
    assert page["count"] == 4
    assert [(t["number"], t["best_score"], t["rank"]) for t in page["data"]] == [
        (1, 0.9, 1),
        (0, 0.5, 2),
        (2, 0.5, 3),
        (3, None, None),
    ]
    second = api.get("/studies/1/trials?limit=2&offset=2").json()
    assert [t["number"] for t in second["data"]] == [2, 3]


def test_study_detail_has_stages_and_progress(api: httpx.Client) -> None:
    body = api.get("/studies/1").json()
    assert (body["name"], body["state"]) == ("tiny", "running")
    assert [(s["index"], s["trials"], s["epochs"], s["state"]) for s in body["stages"]] == [
        (0, 4, 1, "running"),
        (1, 2, 2, "waiting"),
    ]
    assert (body["finished_trials"], body["total_trials"], body["best_score"]) == (0, 6, None)
    assert api.get("/studies").json()["count"] == 1
