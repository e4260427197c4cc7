"""A conditional space end to end: a user function whose `momentum` exists only for sgd
and `beta2` only for adam, run by real Ray workers under TPE over two stages; the API, the
points and the CSV export keep the absent values absent."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import httpx
import pytest

from gridless.common.space import parse_space
from gridless.common.spec import parse_spec
from tests.conftest import Master, run_with_ray

pytestmark = [pytest.mark.slow, pytest.mark.ray]

FUNCTION = """
import math


def main(trial):
    p = trial.params
    if p["optimizer"] == "sgd":
        if "beta2" in p:
            raise RuntimeError(f"an sgd trial got beta2: {p}")
        score = p["momentum"] - abs(math.log10(p["lr"]) + 2) / 10
    else:
        if "momentum" in p:
            raise RuntimeError(f"an adam trial got momentum: {p}")
        score = 0.4 + p["beta2"] / 10 - abs(math.log10(p["lr"]) + 3) / 10
    trial.report(1, val_score=score)
"""

SPEC = {
    "name": "conditional",
    "train": "conditional_fn:main",
    "metric": {"name": "val_score", "mode": "max"},
    "sampler": "tpe",
    "seed": 11,
    "space": {
        "lr": {"log_uniform": [1e-4, 1e-1]},
        "optimizer": {"choice": ["sgd", "adam"]},
        "momentum": {"uniform": [0.5, 0.99], "when": {"optimizer": "sgd"}},
        "beta2": {"uniform": [0.9, 0.999], "when": {"optimizer": "adam"}},
    },
    "stages": [{"trials": 14, "epochs": 1}, {"trials": 4, "epochs": 1}],
    "early_stopping": {"rule": "none"},
    "narrowing": {"max_extra_stages": 0},  # two stages, whatever the flags say
}


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, ray_session: object) -> Iterator[Master]:
    folder = tmp_path_factory.mktemp("conditional-user")
    (folder / "conditional_fn.py").write_text(FUNCTION)
    master = Master(tmp_path_factory.mktemp("conditional") / "run")
    master.server.start()
    run_with_ray(master, parse_spec(SPEC), workers=2, python_path=[str(folder)])
    yield master
    master.server.stop()


def get(master: Master, path: str) -> httpx.Response:
    answer = httpx.get(f"{master.url}/api/v1{path}", timeout=60)
    assert answer.status_code == 200, answer.text
    return answer


def test_every_trial_has_exactly_the_parameters_its_condition_gives(finished: Master) -> None:
    study = get(finished, "/studies/1").json()
    assert study["state"] == "completed"
    trials = get(finished, "/studies/1/trials?limit=100").json()["data"]
    assert len(trials) == 18
    assert {t["state"] for t in trials} == {"completed"}  # the function never raised
    for t in trials:
        branch = {"sgd": "momentum", "adam": "beta2"}[t["params"]["optimizer"]]
        assert set(t["params"]) == {"lr", "optimizer", branch}
    assert {t["params"]["optimizer"] for t in trials} == {"sgd", "adam"}


def test_the_second_stage_keeps_the_conditions_of_its_space(finished: Master) -> None:
    stages = get(finished, "/studies/1").json()["stages"]
    second = parse_space(stages[1]["space"])
    options = second["optimizer"].options  # type: ignore[attr-defined]
    for child, parent_option in (("momentum", "sgd"), ("beta2", "adam")):
        # a child stays exactly while its option does, and keeps its condition
        assert (child in second) == (parent_option in options)
        if child in second:
            assert second[child].when[0].values == (parent_option,)


def test_points_and_the_csv_leave_an_absent_value_blank(finished: Master) -> None:
    points = get(finished, "/studies/1/points").json()
    for i in range(points["count"]):
        sgd = points["values"]["optimizer"][i] == "sgd"
        assert (points["values"]["momentum"][i] is None) == (not sgd)
        assert (points["values"]["beta2"][i] is None) == sgd
    text = get(finished, "/studies/1/trials?format=csv&limit=100").text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 18
    header = next(iter(rows))
    momentum = next(k for k in header if k.endswith("momentum"))
    beta2 = next(k for k in header if k.endswith("beta2"))
    optimizer = next(k for k in header if k.endswith("optimizer"))
    for row in rows:
        if row[optimizer] == "sgd":
            assert (row[beta2], float(row[momentum]) >= 0.5) == ("", True)
        else:
            assert (row[momentum], float(row[beta2]) >= 0.9) == ("", True)


def test_the_study_detail_shows_the_condition_in_the_stored_space(finished: Master) -> None:
    space = get(finished, "/studies/1").json()["spec"]["space"]
    assert space["momentum"] == {"uniform": [0.5, 0.99], "when": {"optimizer": "sgd"}}
