"""The analysis API over a real master (SQLite and PostgreSQL): the plot
points, the last-epoch metrics of a trial page, the study's metric names, the warning
counts, parameter importance, and the CSV/JSON export."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from gridless.master.context import count_warning_codes
from tests.conftest import Master, tiny_spec

SPACE = {
    "learning_rate": {"log_uniform": [1e-3, 1.0]},
    "hidden": {"int": [16, 64]},
    "act": {"choice": ["relu", "tanh"]},
}


def spec(**changes: Any) -> Any:
    base = {
        "name": "analysis",
        "space": SPACE,
        # the hand-driven workers below choose each trial's parameters, as workers do
        # under random sampling (the model-based default hands them out itself)
        "sampler": "random",
        "early_stopping": {"rule": "none"},
        "stages": [{"trials": 8, "epochs": 2}, {"trials": 4, "epochs": 2}],
    }
    return tiny_spec(**{**base, **changes})


@pytest.fixture
def api(any_master: Master) -> Iterator[httpx.Client]:
    any_master.service.create_study(spec())
    with httpx.Client(base_url=any_master.url + "/api/v1", timeout=30) as client:
        yield client


class Worker:
    """A hand-driven worker: claims a trial, registers its parameters, reports epochs and
    finishes it, over HTTP, asserting every answer is a 2xx."""

    def __init__(self, api: httpx.Client, name: str = "w1") -> None:
        self.api, self.name = api, name

    def claim(self, params: dict[str, Any]) -> int:
        answer = self.api.post("/workers/claim", json={"worker_id": self.name}).json()
        assert answer["action"] == "train", answer
        trial_id = int(answer["assignment"]["trial_id"])
        self.post(f"/trials/{trial_id}/start", {"params": params})
        return trial_id

    def report(self, trial_id: int, epoch: int, **fields: Any) -> None:
        self.post(f"/trials/{trial_id}/reports", {"epoch": epoch, **fields})

    def finish(self, trial_id: int, state: str = "completed", **fields: Any) -> None:
        self.post(f"/trials/{trial_id}/finish", {"state": state, **fields})

    def run(self, params: dict[str, Any], scores: list[float], state: str = "completed") -> int:
        trial_id = self.claim(params)
        for epoch, score in enumerate(scores, start=1):
            self.report(trial_id, epoch, val_accuracy=score, train_loss=1.0 / epoch)
        self.finish(trial_id, state)
        return trial_id

    def post(self, path: str, body: dict[str, Any]) -> None:
        response = self.api.post(path, json={"worker_id": self.name, "attempt": 0, **body})
        assert response.status_code == 200, response.text


def params(lr: float = 0.01, hidden: int = 32, act: str = "relu") -> dict[str, Any]:
    return {"learning_rate": lr, "hidden": hidden, "act": act}


# -- GET /studies/{id}/points ---------------------------------------------------------------


def test_points_are_columns_in_finish_order_with_unfinished_last(api: httpx.Client) -> None:
    w = Worker(api)
    first = w.claim(params(0.01, 16, "relu"))  # trial 0: finishes last of the finished
    w.report(first, 1, val_accuracy=0.5)
    w.run(params(0.1, 64, "tanh"), [0.6, 0.7])  # trial 1: finishes first
    failed = w.claim(params(0.02, 20, "relu"))  # trial 2: scored an epoch, then failed
    w.report(failed, 1, val_accuracy=0.9)
    w.finish(failed, "failed", error="boom")
    diverged = w.claim(params(0.9, 30, "tanh"))  # trial 3: scored, then diverged
    w.report(diverged, 1, val_accuracy=0.8)
    w.report(diverged, 2, val_accuracy=None, train_loss=None, diverged=True)
    w.finish(first)
    running = w.claim(params(0.05, 40, "relu"))  # trial 4: still running
    w.report(running, 1, val_accuracy=0.3)

    response = api.get("/studies/1/points")
    assert response.status_code == 200
    points = response.json()
    assert points == {
        "count": 5,
        "params": ["learning_rate", "hidden", "act"],
        "number": [1, 2, 3, 0, 4],
        "stage": [1, 1, 1, 1, 1],
        "state": ["completed", "failed", "diverged", "completed", "running"],
        "origin": [None, None, None, None, None],
        "score": [0.7, None, None, 0.5, 0.3],  # a running trial's: its best so far
        "order": [1, 2, 3, 4, None],
        "values": {
            "learning_rate": [0.1, 0.02, 0.9, 0.01, 0.05],
            "hidden": [64, 20, 30, 16, 40],
            "act": ["tanh", "relu", "tanh", "relu", "relu"],
        },
    }
    assert all(isinstance(v, int) for v in points["values"]["hidden"])


def test_points_follow_the_stages_and_keep_enqueued_origins(any_master: Master) -> None:
    enqueued = params(0.5, 33, "tanh")
    any_master.service.create_study(spec(name="staged", enqueue=[enqueued]))
    with httpx.Client(base_url=any_master.url + "/api/v1", timeout=30) as api:
        w = Worker(api)
        for i in range(8):
            given = enqueued if i == 0 else params(0.001 * (i + 1), 16 + i, "relu")
            w.run(given, [0.1 * i, 0.1 * i + 0.05])
        w.run(params(0.003, 20, "relu"), [0.5, 0.6])  # stage 2's first trial
        points = api.get("/studies/1/points").json()
    assert points["count"] == 9
    assert points["stage"] == [1] * 8 + [2]
    assert points["origin"] == ["enqueued"] + [None] * 8
    assert points["order"] == list(range(1, 10))
    assert points["score"][0] == 0.05


def test_points_of_an_empty_and_an_unknown_study(api: httpx.Client) -> None:
    assert api.get("/studies/1/points").json() == {
        "count": 0,
        "params": ["learning_rate", "hidden", "act"],
        "number": [],
        "stage": [],
        "state": [],
        "origin": [],
        "score": [],
        "order": [],
        "values": {"learning_rate": [], "hidden": [], "act": []},
    }
    response = api.get("/studies/99/points")
    assert (response.status_code, response.json()) == (404, {"detail": "no study 99"})


# -- trial pages' metrics and the study's metric names ---------------------------------------


def test_a_trial_page_carries_each_trials_last_epoch_metrics(api: httpx.Client) -> None:
    w = Worker(api)
    a = w.claim(params())
    w.report(a, 1, val_accuracy=0.6, train_loss=2.0, metrics={"warmup_loss": 3.0})
    w.report(a, 2, val_accuracy=0.5, train_loss=1.0, metrics={"test_accuracy": 0.55})
    w.finish(a)
    b = w.claim(params(0.2))
    w.report(b, 1, val_accuracy=0.4, val_loss=1.5)
    w.claim(params(0.3))  # no epoch yet

    data = {t["number"]: t for t in api.get("/studies/1/trials").json()["data"]}
    # Trial 0's best epoch is 1, its last is 2: `metrics` is the last, every name in it.
    assert data[0]["best_metrics"] == {"val_accuracy": 0.6, "train_loss": 2.0, "warmup_loss": 3.0}
    assert data[0]["metrics"] == {"val_accuracy": 0.5, "train_loss": 1.0, "test_accuracy": 0.55}
    assert data[1]["metrics"] == {"val_accuracy": 0.4, "val_loss": 1.5}
    assert data[2]["metrics"] == {}
    filtered = api.get("/studies/1/trials", params={"state": "completed"}).json()["data"]
    assert [t["metrics"] for t in filtered] == [data[0]["metrics"]]

    detail = api.get("/studies/1").json()
    # Every name reported at any epoch of any trial, once, sorted.
    assert detail["metric_names"] == [
        "test_accuracy",
        "train_loss",
        "val_accuracy",
        "val_loss",
        "warmup_loss",
    ]
    w.report(b, 2, val_accuracy=0.45, metrics={"val_f1": 0.3})  # a new name appears later
    assert "val_f1" in api.get("/studies/1").json()["metric_names"]


def test_metric_names_are_per_study(any_master: Master) -> None:
    any_master.service.create_study(spec())
    any_master.service.create_study(spec(name="other"))
    with httpx.Client(base_url=any_master.url + "/api/v1", timeout=30) as api:
        w = Worker(api)
        trial = w.claim(params())  # the first study's
        w.report(trial, 1, val_accuracy=0.5, metrics={"only_here": 1.0})
        assert api.get("/studies/1").json()["metric_names"] == ["only_here", "val_accuracy"]
        assert api.get("/studies/2").json()["metric_names"] == []


def test_warning_counts_count_each_trial_once_per_code(api: httpx.Client) -> None:
    w = Worker(api)
    rising = {"code": "loss_rising", "message": "the loss rose", "epoch": 1}
    dead = {"code": "dead_relu", "message": "half the units are dead", "epoch": 1}
    a = w.claim(params())
    w.report(a, 1, val_accuracy=0.5, warnings=[rising, dead])
    w.report(a, 2, val_accuracy=0.5, warnings=[rising])
    b = w.claim(params())
    w.report(b, 1, val_accuracy=0.5, warnings=[rising])
    w.claim(params())  # none

    detail = api.get("/studies/1").json()
    assert detail["warning_counts"] == {"dead_relu": 1, "loss_rising": 2}
    trials = api.get("/studies/1/trials").json()["data"]
    assert detail["warning_counts"] == count_warning_codes(t["warnings"] for t in trials)
    assert api.get("/studies/1/warnings").json()["counts"] == detail["warning_counts"]


# -- GET /studies/{id}/importance -----------------------------------------------------------


def _lr_decides(api: httpx.Client, n: int) -> None:
    """`n` trials whose score depends on the learning rate only (hidden and act vary)."""
    w = Worker(api)
    for i in range(n):
        lr = 10 ** (-3 + 3 * i / max(1, n - 1))
        score = 1.0 - abs(math.log10(lr) + 1.5) / 1.5
        w.run(params(lr, 16 + (i * 7) % 49, ["relu", "tanh"][(i * 5) % 3 % 2]), [score])


def test_importance_names_the_parameter_that_decides(any_master: Master) -> None:
    any_master.service.create_study(
        spec(stages=[{"trials": 40, "epochs": 1}, {"trials": 4, "epochs": 1}])
    )
    with httpx.Client(base_url=any_master.url + "/api/v1", timeout=120) as api:
        _lr_decides(api, 40)
        response = api.get("/studies/1/importance")
    assert response.status_code == 200
    answer = response.json()
    assert answer["method"] == "PED-ANOVA (optuna.importance.PedAnovaImportanceEvaluator)"
    study = answer["study"]
    assert study["trials"] == 40
    assert set(study["importances"]) == {"learning_rate", "hidden", "act"}
    assert math.isclose(sum(study["importances"].values()), 1.0)
    assert max(study["importances"], key=study["importances"].get) == "learning_rate"
    first, second = answer["stages"]
    assert (first["stage"], first["trials"]) == (1, 40)
    assert first["importances"]["learning_rate"] > 0.5
    assert (second["stage"], second["trials"], second["importances"]) == (2, 0, None)
    assert answer["note"] == "stage 2: fewer than 4 scored trials"


def test_importance_matches_optuna_fed_the_same_trials(api: httpx.Client) -> None:
    """The answer is Optuna's own, for the stage's distributions (log where the space is)."""
    import optuna
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    _lr_decides(api, 8)  # stage 1: 8 trials
    points = api.get("/studies/1/points").json()
    dists = {
        "learning_rate": FloatDistribution(1e-3, 1.0, log=True),
        "hidden": IntDistribution(16, 64),
        "act": CategoricalDistribution(["relu", "tanh"]),
    }
    ostudy = optuna.create_study(direction="maximize")
    for i, score in enumerate(points["score"]):
        values = {name: points["values"][name][i] for name in dists}
        ostudy.add_trial(
            optuna.trial.create_trial(params=values, distributions=dists, value=score)
        )
    expected = optuna.importance.get_param_importances(
        ostudy, evaluator=optuna.importance.PedAnovaImportanceEvaluator()
    )
    answer = api.get("/studies/1/importance").json()
    stage1 = answer["stages"][0]["importances"]
    assert stage1.keys() == expected.keys()
    for name, value in expected.items():
        assert math.isclose(stage1[name], value, rel_tol=1e-9), name


def test_importance_is_null_with_a_reason_and_recomputed_as_trials_finish(
    api: httpx.Client,
) -> None:
    w = Worker(api)
    for i in range(3):
        w.run(params(0.01 * (i + 1)), [0.1 * i])
    w.run(params(0.5), [0.9], state="failed")  # its score does not count
    answer = api.get("/studies/1/importance").json()
    assert answer["study"] == {"trials": 3, "importances": None}
    assert answer["stages"][0] == {"stage": 1, "trials": 3, "importances": None}
    assert answer["note"] == (
        "stage 1: fewer than 4 scored trials; stage 2: not started; "
        "study: fewer than 4 scored trials"
    )
    w.run(params(0.2, 60, "tanh"), [0.7])
    again = api.get("/studies/1/importance").json()
    assert again["study"]["trials"] == 4
    assert again["study"]["importances"] is not None


def test_importance_of_equal_scores_says_so(api: httpx.Client) -> None:
    w = Worker(api)
    for i in range(5):
        w.run(params(0.01 * (i + 1), 16 + i), [0.5])
    answer = api.get("/studies/1/importance").json()
    assert answer["study"]["importances"] is None
    assert "study: every scored trial has the same score" in answer["note"]


def test_importance_samples_big_sets_and_says_so(
    api: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gridless.master import importance

    monkeypatch.setattr(importance, "MAX_IMPORTANCE_TRIALS", 5)
    _lr_decides(api, 8)
    answer = api.get("/studies/1/importance").json()
    assert answer["study"]["trials"] == 5
    assert answer["stages"][0]["trials"] == 5
    assert "stage 1: a seeded sample of 5 of 8 scored trials" in answer["note"]
    assert "study: a seeded sample of 5 of 8 scored trials" in answer["note"]
    assert answer["study"]["importances"] is not None


def test_importance_of_an_unknown_study_is_404(api: httpx.Client) -> None:
    response = api.get("/studies/99/importance")
    assert (response.status_code, response.json()) == (404, {"detail": "no study 99"})


# -- GET /studies/{id}/trials?format=csv|json ------------------------------------------------


def _mixed(api: httpx.Client) -> None:
    """Five trials: scored, failed, with user metrics and warnings, one running."""
    w = Worker(api)
    rising = {"code": "loss_rising", "message": "the loss rose", "epoch": 1}
    dead = {"code": "dead_relu", "message": "dead units", "epoch": 2}
    a = w.claim(params(0.01, 16, "relu"))
    w.report(a, 1, val_accuracy=0.6, metrics={"warmup_loss": 3.0}, warnings=[rising])
    w.report(a, 2, val_accuracy=0.5, metrics={"test_accuracy": 0.55}, warnings=[dead])
    w.finish(a)
    w.run(params(0.1, 64, "tanh"), [0.7, 0.8])
    failed = w.claim(params(0.02, 20, "relu"))
    w.finish(failed, "failed", error="boom")
    w.run(params(0.5, 40, "tanh"), [0.2, 0.3])
    running = w.claim(params(0.05, 30, "relu"))
    w.report(running, 1, val_accuracy=0.4)


def test_csv_export_has_every_matching_trial_in_list_order(
    api: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    import csv

    from gridless.master import export

    monkeypatch.setattr(export, "PAGE", 2)  # several pages for five trials
    _mixed(api)
    response = api.get("/studies/1/trials", params={"format": "csv"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == 'attachment; filename="analysis-trials.csv"'
    lines = response.text.splitlines()
    assert lines[0] == (
        "number,stage,state,origin,best_score,best_epoch,params.learning_rate,params.hidden,"
        "params.act,metrics.test_accuracy,metrics.train_loss,metrics.val_accuracy,"
        "metrics.warmup_loss,warnings,error"
    )
    rows = list(csv.DictReader(response.text.splitlines()))
    page = api.get("/studies/1/trials", params={"limit": 1000}).json()["data"]
    assert [int(r["number"]) for r in rows] == [t["number"] for t in page]  # ranked
    first = rows[0]
    assert first == {
        "number": "1",
        "stage": "1",
        "state": "completed",
        "origin": "",
        "best_score": "0.8",
        "best_epoch": "2",
        "params.learning_rate": "0.1",
        "params.hidden": "64",
        "params.act": "tanh",
        "metrics.test_accuracy": "",
        "metrics.train_loss": "0.5",
        "metrics.val_accuracy": "0.8",
        "metrics.warmup_loss": "",
        "warnings": "",
        "error": "",
    }
    by_number = {int(r["number"]): r for r in rows}
    assert by_number[0]["warnings"] == "loss_rising;dead_relu"
    assert by_number[0]["metrics.test_accuracy"] == "0.55"
    assert by_number[0]["metrics.warmup_loss"] == ""  # epoch 1 only: not the last epoch
    assert (by_number[2]["state"], by_number[2]["best_score"]) == ("failed", "")
    assert by_number[2]["error"] == "boom"  # a failed trial says why
    assert by_number[4]["state"] == "running"


@pytest.mark.parametrize(
    ("query", "numbers"),
    [
        ({"state": "completed"}, [1, 0, 3]),
        ({"sort": "number"}, [0, 1, 2, 3, 4]),
        ({"sort": "-params.learning_rate"}, [3, 1, 4, 2, 0]),
        ({"param": "learning_rate:0.02:0.2"}, [1, 4, 2]),
        ({"param": ["learning_rate::0.2", "hidden:20:"], "sort": "number"}, [1, 2, 4]),
        ({"stage": 2}, []),
    ],
)
def test_exports_follow_the_lists_filters_and_order(
    api: httpx.Client, query: dict[str, Any], numbers: list[int]
) -> None:
    _mixed(api)
    listed = api.get("/studies/1/trials", params={**query, "limit": 1000}).json()["data"]
    assert [t["number"] for t in listed] == numbers
    csv_text = api.get("/studies/1/trials", params={**query, "format": "csv"}).text
    assert [int(line.split(",")[0]) for line in csv_text.splitlines()[1:]] == numbers
    as_json = api.get("/studies/1/trials", params={**query, "format": "json"}).json()
    assert [t["number"] for t in as_json] == numbers


def test_json_export_carries_the_same_trials_as_objects(
    api: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gridless.master import export

    monkeypatch.setattr(export, "PAGE", 2)
    _mixed(api)
    response = api.get("/studies/1/trials", params={"format": "json", "sort": "number"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["content-disposition"] == 'attachment; filename="analysis-trials.json"'
    trials = response.json()
    assert len(trials) == 5
    assert trials[0] == {
        "number": 0,
        "stage": 1,
        "state": "completed",
        "origin": None,
        "best_score": 0.6,
        "best_epoch": 1,
        "params": {"learning_rate": 0.01, "hidden": 16, "act": "relu"},
        "metrics": {"val_accuracy": 0.5, "test_accuracy": 0.55},
        "warnings": ["loss_rising", "dead_relu"],
        "error": None,
    }
    assert trials[2]["error"] == "boom"
    page = api.get("/studies/1/trials", params={"sort": "number"}).json()["data"]
    assert [t["metrics"] for t in trials] == [t["metrics"] for t in page]


def test_an_export_of_no_trials_is_a_header_or_an_empty_array(api: httpx.Client) -> None:
    csv_text = api.get("/studies/1/trials", params={"format": "csv"}).text
    assert csv_text.splitlines() == [
        "number,stage,state,origin,best_score,best_epoch,params.learning_rate,"
        "params.hidden,params.act,warnings,error"
    ]
    assert api.get("/studies/1/trials", params={"format": "json"}).json() == []


@pytest.mark.parametrize(
    ("query", "status", "detail"),
    [
        ({"format": "xml"}, 422, "query.format: Input should be 'csv' or 'json'"),
        ({"format": "csv", "sort": "secret"}, 422, None),
        ({"format": "csv", "param": "nope:0:1"}, 422, None),
        ({"format": "csv", "stage": 7}, 404, "study 1 has no stage 7"),
    ],
)
def test_a_bad_export_request_is_refused_before_streaming(
    api: httpx.Client, query: dict[str, Any], status: int, detail: str | None
) -> None:
    response = api.get("/studies/1/trials", params=query)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    if detail is not None:
        assert response.json() == {"detail": detail}
    unpaged = {k: v for k, v in query.items() if k != "format"}
    if unpaged and status == 422:  # the same refusal as the page's
        assert response.json() == api.get("/studies/1/trials", params=unpaged).json()
