"""Multi-objective studies: the non-dominated sort, the front in the API and the study
detail, narrowing around the front, and no early stopping."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pytest

from gridless.common.errors import SpecError
from gridless.common.metric import Metric, parse_objectives
from gridless.common.spec import parse_spec
from gridless.master.pareto import non_dominated, objective_values
from tests.conftest import Master

MAX_MIN = (1.0, -1.0)


@pytest.mark.parametrize(
    ("values", "signs", "front"),
    [
        ([], MAX_MIN, []),
        ([[0.5, 10.0]], MAX_MIN, [0]),
        # f1 up, latency down: (0.9, 30) and (0.8, 10) trade off; (0.7, 20) is beaten by (0.8, 10)
        ([[0.7, 20.0], [0.9, 30.0], [0.8, 10.0]], MAX_MIN, [1, 2]),
        # equal rows dominate neither each other
        ([[0.8, 10.0], [0.8, 10.0], [0.7, 10.0]], MAX_MIN, [0, 1]),
        # equal on one objective, better on the other: dominated
        ([[0.8, 10.0], [0.8, 12.0]], MAX_MIN, [0]),
        # both minimized
        ([[1.0, 5.0], [2.0, 1.0], [3.0, 3.0]], (-1.0, -1.0), [0, 1]),
        # three objectives: each row best on one
        ([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]], (1.0, 1.0, 1.0), [0, 1, 2]),
    ],
)
def test_non_dominated_rows_best_first_by_the_first_objective(
    values: list[list[float]], signs: tuple[float, ...], front: list[int]
) -> None:
    assert non_dominated(values, signs) == front


def test_the_sweep_agrees_with_comparing_every_pair() -> None:
    rng = np.random.default_rng(0)
    for k in (2, 3):
        values = rng.integers(0, 6, size=(200, k)).astype(float)  # many ties
        signs = rng.choice([-1.0, 1.0], size=k)
        v = values * signs
        brute = {
            i
            for i in range(len(v))
            if not any(np.all(v[j] >= v[i]) and np.any(v[j] > v[i]) for j in range(len(v)))
        }
        found = non_dominated(values.tolist(), signs.tolist())
        assert set(found) == brute
        firsts = [v[i][0] for i in found]
        assert firsts == sorted(firsts, reverse=True)  # best first by the first objective


def test_a_trial_without_every_objective_is_not_compared() -> None:
    objectives = (Metric("val_f1", "max"), Metric("latency_ms", "min"))
    assert objective_values(objectives, 0.9, {"latency_ms": 12}) == (0.9, 12.0)
    assert objective_values(objectives, 0.9, {}) is None
    assert objective_values(objectives, 0.9, {"latency_ms": float("nan")}) is None
    assert objective_values(objectives, None, {"latency_ms": 3.0}) is None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([{"name": "val_f1", "mode": "max"}], "metric: a list names 2 to 4 objectives"),
        (
            [{"name": "val_f1", "mode": "max"}, {"name": "val_f1", "mode": "min"}],
            "metric: each objective once, but got ['val_f1', 'val_f1']",
        ),
        (
            [{"name": "val_f1", "mode": "max"}, {"name": "latency_ms"}],
            "metric[1].mode: say which way 'latency_ms' is better",
        ),
        (
            [{"name": "val_f1", "mode": "max"}, 3],
            "metric[1]: a name or {name, mode}, but got int 3",
        ),
    ],
)
def test_a_bad_list_of_metrics_names_the_entry(raw: Any, message: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_objectives(raw)
    assert str(err.value).startswith(message)


TWO = {
    "name": "two",
    "train": "some_module:main",
    "metric": [{"name": "val_f1", "mode": "max"}, {"name": "latency_ms", "mode": "min"}],
    "seed": 2,
    "space": {"width": {"uniform": [0.0, 1.0]}},
    "stages": [{"trials": 8, "epochs": 2}, {"trials": 2, "epochs": 1}],
    "narrowing": {"max_extra_stages": 0},
}


def _drive(master: Master, score: Any, trials: int) -> list[dict[str, Any]]:
    """Run `trials` trials through the worker API: each reports `score(params, epoch)`."""
    done = []
    with httpx.Client(base_url=master.url + "/api/v1") as api:
        for _ in range(trials):
            job = api.post("/workers/claim", json={"worker_id": "w1"}).json()["assignment"]
            params = {"width": 0.1 + 0.8 * job["trial_number"] / 10}
            tid = job["trial_id"]
            api.post(
                f"/trials/{tid}/start", json={"worker_id": "w1", "attempt": 0, "params": params}
            )
            for epoch in range(1, job["epochs"] + 1):
                answer = api.post(
                    f"/trials/{tid}/reports",
                    json={
                        "worker_id": "w1",
                        "attempt": 0,
                        "epoch": epoch,
                        "metrics": score(params, epoch),
                    },
                )
                assert answer.status_code == 200, answer.text
            api.post(
                f"/trials/{tid}/finish",
                json={"worker_id": "w1", "attempt": 0, "state": "completed"},
            )
            done.append(params)
    return done


def _tradeoff(params: dict[str, float], epoch: int) -> dict[str, float]:
    # a wider model scores better and answers slower; the first epoch is far behind (no
    # early stopping may cut it); trial 3 (width 0.34) is slow for its width: dominated
    w = params["width"]
    slow = 40.0 if abs(w - 0.34) < 1e-9 else 0.0
    return {"val_f1": w * epoch / 2, "latency_ms": 10 + 100 * w + slow}


def test_the_front_is_in_the_api_and_the_study_detail(master: Master) -> None:
    master.service.create_study(parse_spec(TWO))
    _drive(master, _tradeoff, 8)
    with httpx.Client(base_url=master.url + "/api/v1") as api:
        front = api.get("/studies/1/pareto").json()
        detail = api.get("/studies/1").json()
    assert front["objectives"] == [
        {"name": "val_f1", "mode": "max"},
        {"name": "latency_ms", "mode": "min"},
    ]
    numbers = [t["number"] for t in front["data"]]
    assert numbers == [7, 6, 5, 4, 2, 1, 0]  # best first by val_f1; trial 3 is dominated
    assert front["count"] == 7
    widths = [t["params"]["width"] for t in front["data"]]
    assert [t["values"] for t in front["data"]] == [
        [pytest.approx(w), pytest.approx(10 + 100 * w)] for w in widths
    ]
    assert detail["pareto_front"] == numbers
    assert [o["name"] for o in detail["objectives"]] == ["val_f1", "latency_ms"]
    assert detail["metric"] == "val_f1"  # the primary objective ranks trials
    # every trial ran both epochs: no early stopping in a multi-objective study
    with httpx.Client(base_url=master.url + "/api/v1") as api:
        trials = api.get("/studies/1/trials", params={"limit": 20}).json()["data"]
    assert {t["last_epoch"] for t in trials} == {2}
    assert {t["state"] for t in trials} == {"completed"}


def test_the_next_stage_spans_the_front(master: Master) -> None:
    master.service.create_study(parse_spec(TWO))
    _drive(master, _tradeoff, 8)
    with httpx.Client(base_url=master.url + "/api/v1") as api:
        stages = api.get("/studies/1").json()["stages"]
    first = stages[0]["decisions"]
    assert first["top_trials"] == [7, 6, 5, 4, 2, 1, 0]  # the front, not the top 3 by f1
    low, high = stages[1]["space"]["width"]["uniform"]
    # the front spans widths 0.1 .. 0.66: the next range keeps (almost) all of it; the
    # top 3 by f1 alone would have narrowed it to about [0.45, 0.82]
    assert low <= 0.1 + 1e-9
    assert high >= 0.66


def test_a_single_objective_study_has_no_front(master: Master) -> None:
    master.service.create_study(parse_spec({**TWO, "metric": {"name": "val_f1", "mode": "max"}}))
    with httpx.Client(base_url=master.url + "/api/v1") as api:
        answer = api.get("/studies/1/pareto")
        detail = api.get("/studies/1").json()
    assert answer.status_code == 409
    assert answer.json()["detail"].startswith("study 1 has one objective (val_f1)")
    assert detail["pareto_front"] is None
    assert detail["objectives"] == [{"name": "val_f1", "mode": "max"}]
