"""The stage controller acts on the evidence, through a real master over HTTP:
a stage where every trial diverged is followed by a range moved away from the
divergence; a border walk moves a whole width and adds stages within its budget; a stage
where nothing scored for another reason keeps its ranges and says why."""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from typing import Any

import httpx

from gridless.common.space import parse_space, sample_params
from gridless.common.spec import trial_rng
from tests.conftest import TINY_SPEC, Master, tiny_spec

# An objective of the learning rate alone: None diverges, "fail" raises.
Objective = Callable[[float], float | str | None]


def drive(master: Master, objective: Objective, *, max_trials: int = 200) -> dict[str, Any]:
    """Play the workers: claim, sample as a worker does, report one epoch, finish; until
    the study completes. Returns the study's detail."""
    with httpx.Client(base_url=master.url + "/api/v1", timeout=60) as api:
        for _ in range(max_trials):
            if api.get("/studies/1").json()["state"] != "running":
                break
            for _wait in range(600):  # the default sampler may ask for a moment
                answer = api.post("/workers/claim", json={"worker_id": "w1"}).json()
                if answer["action"] != "wait":
                    break
                time.sleep(answer["retry_after_s"])
            job = answer["assignment"]
            assert job is not None, "a running study with nothing to claim"
            params = job["params"] or sample_params(
                parse_space(job["space"]), trial_rng(TINY_SPEC["seed"], job["trial_number"])
            )
            tid, body = job["trial_id"], {"worker_id": "w1", "attempt": 0}
            api.post(f"/trials/{tid}/start", json={**body, "params": params})
            result = objective(float(params["learning_rate"]))
            if result == "fail":
                api.post(f"/trials/{tid}/finish", json={**body, "state": "failed", "error": "x"})
                continue
            if result is None:
                report = {**body, "epoch": 1, "train_loss": None, "diverged": True}
                assert api.post(f"/trials/{tid}/reports", json=report).status_code == 200
                continue
            report = {**body, "epoch": 1, "val_accuracy": result}
            assert api.post(f"/trials/{tid}/reports", json=report).status_code == 200
            api.post(f"/trials/{tid}/finish", json={**body, "state": "completed"})
        detail = api.get("/studies/1").json()
    assert detail["state"] == "completed", detail["state"]
    return dict(detail)


def decades(raw: dict[str, Any]) -> tuple[float, float]:
    lr = parse_space(raw)["learning_rate"]
    return math.log10(lr.low), math.log10(lr.high)  # type: ignore[attr-defined]


def peaked(lr: float) -> float | None:
    """Diverges above 1; scores peak at 0.1 (the good region) and fall off in log10."""
    if lr > 1.0:
        return None
    return max(0.05, 0.95 - 0.2 * abs(math.log10(lr) + 1.0))


SPACE = {"learning_rate": {"log_uniform": [1.0, 1000.0]}, "reg": {"log_uniform": [1e-6, 1e-2]}}


def test_a_stage_where_every_trial_diverged_is_followed_by_a_range_moved_away(
    master: Master,
) -> None:
    master.service.create_study(
        tiny_spec(space=SPACE, stages=[{"trials": 6, "epochs": 1}, {"trials": 4, "epochs": 1}])
    )
    study = drive(master, peaked)
    first, added, last = study["stages"]
    assert [(s["trials"], s["epochs"]) for s in study["stages"]] == [(6, 1), (6, 1), (4, 1)]
    assert study["spec"]["stages"] == [
        {"trials": 6, "epochs": 1},
        {"trials": 6, "epochs": 1},
        {"trials": 4, "epochs": 1},
    ]
    decided = first["decisions"]
    assert decided["counts"] == {
        "trials": 6,
        "scored": 0,
        "diverged": 6,
        "failed": 0,
        "too_high": 6,
        "too_low": 0,
        "learned_nothing": 0,
    }
    (flag,) = decided["flags"]
    assert (flag["param"], flag["edge"], flag["walk"]) == ("learning_rate", "lower", True)
    assert flag["message"].startswith(
        "learning_rate range [1, 1e+03] is too high: 6 of 6 trials diverged"
    )
    assert decided["no_score"].endswith("the ranges moved away from the divergence")
    assert decided["added_stage"]["index"] == 1
    # past the plan of 10 epochs, and it says why: nothing had scored
    assert decided["added_stage"]["budget"]["plan_epochs"] == 10
    assert "no trial of the study scored yet" in decided["added_stage"]["budget"]["why"]
    low, high = decades(added["space"])
    assert low <= 0.0 - 3.0 + 1e-9  # a whole width (3 decades) below
    assert 10**high <= flag["value"] * (1 + 1e-9)  # below every trial that diverged
    assert added["space"]["reg"] == SPACE["reg"]  # no evidence about reg: kept
    assert "added_stage" not in added["decisions"]  # the walk arrived: scores came back
    assert study["best_score"] > 0.5
    assert last["state"] == "done"


def rising(lr: float) -> float:
    """Scores that keep rising with the learning rate, far past any range."""
    return min(0.99, 0.1 + 0.05 * (math.log10(lr) + 9))


def test_a_backed_border_walks_whole_widths_and_adds_stages_within_the_budget(
    master: Master,
) -> None:
    space = {"learning_rate": {"log_uniform": [1e-6, 1e-3], "limits": [1e-9, 1e9]}}
    master.service.create_study(
        tiny_spec(
            space=space,
            stages=[{"trials": 20, "epochs": 1}, {"trials": 4, "epochs": 1}],
            # the plan is 24 epochs; the spec allows added stages 40 more
            narrowing={"max_extra_stages": 2, "border": 0.2, "extra_epochs": 40},
            early_stopping={"rule": "none"},
        )
    )
    study = drive(master, rising)
    stages = study["stages"]
    assert study["finished_trials"] <= 24 + 40  # one epoch a trial
    assert [(s["trials"], s["epochs"]) for s in stages] == [(20, 1), (20, 1), (20, 1), (4, 1)]
    for before, after in itertools.pairwise(stages):
        flags = [f for f in before["decisions"]["flags"] if f["param"] == "learning_rate"]
        assert [(f["edge"], f["walk"]) for f in flags] == [("upper", True)]
        assert "and the scores rise toward it (rho +" in flags[0]["message"]
        old, new = decades(before["space"]), decades(after["space"])
        assert new[1] - old[1] >= (old[1] - old[0]) - 1e-9  # at least the whole old width
    assert [("added_stage" in s["decisions"]) for s in stages] == [True, True, False, False]
    assert stages[2]["decisions"]["flags"][0]["walk"]  # still walking: budget spent
    for stage in stages:
        low, high = decades(stage["space"])
        assert -9 <= low <= high <= 9  # the limits hold


def test_no_extra_stages_still_walks_a_whole_width(master: Master) -> None:
    master.service.create_study(
        tiny_spec(
            space={"learning_rate": {"log_uniform": [1e-6, 1e-3]}},
            stages=[{"trials": 10, "epochs": 1}, {"trials": 4, "epochs": 1}],
            narrowing={"max_extra_stages": 0},
        )
    )
    first, second = drive(master, rising)["stages"]
    assert "added_stage" not in first["decisions"]
    assert decades(second["space"])[1] >= 0.0 - 1e-9  # from 1e-3 up by 3 decades


def test_a_stage_where_every_trial_failed_keeps_its_ranges_and_says_why(
    master: Master,
) -> None:
    master.service.create_study(
        tiny_spec(
            space=SPACE,
            stages=[{"trials": 3, "epochs": 1}, {"trials": 2, "epochs": 1}],
            failures={"first": 10},  # the circuit breaker would pause it at once
        )
    )
    study = drive(master, lambda lr: "fail" if lr > 0 else None)
    first, second = study["stages"]
    assert len(study["stages"]) == 2  # nothing moved: no stage added
    assert first["decisions"]["no_score"] == (
        "no trial of 3 scored (0 diverged, 3 failed): no evidence points a direction, so the "
        "ranges are kept (failures are the circuit breaker's to judge)"
    )
    assert second["space"] == SPACE


def test_a_study_whose_only_stage_diverged_adds_one_rather_than_end_unscored(
    master: Master,
) -> None:
    master.service.create_study(tiny_spec(space=SPACE, stages=[{"trials": 5, "epochs": 1}]))
    study = drive(master, peaked)
    first, added = study["stages"]
    assert first["decisions"]["added_stage"]["index"] == 1
    assert (added["trials"], added["epochs"], added["state"]) == (5, 1, "done")
    assert study["best_score"] > 0.5  # it did not end with no scored trial
    assert study["border_flags"] is not None


def test_an_added_stage_spends_the_plan_by_shrinking_the_later_stages(master: Master) -> None:
    """A 30-epoch plan: the walk after stage 1 adds a stage of 10 trials, paid by the two
    later stages (10 -> 5 trials each); the next walk finds the budget spent and adds
    nothing, saying so. The study trains no more than its plan."""
    master.service.create_study(
        tiny_spec(
            space={"learning_rate": {"log_uniform": [1e-6, 1e-3], "limits": [1e-9, 1e9]}},
            stages=[{"trials": 10, "epochs": 1}] * 3,
            early_stopping={"rule": "none"},
        )
    )
    study = drive(master, rising)
    stages = study["stages"]
    assert [(s["trials"], s["epochs"]) for s in stages] == [(10, 1), (10, 1), (5, 1), (5, 1)]
    assert study["spec"]["stages"] == [{"trials": t, "epochs": 1} for t in (10, 10, 5, 5)]
    assert study["spec"]["epoch_budget"] == 30
    budget = stages[0]["decisions"]["added_stage"]["budget"]
    assert budget["why"] == (
        "within the epoch budget: stage 3 10 -> 5 trials; stage 4 10 -> 5 trials to pay for it"
    )
    assert stages[1]["decisions"]["budget"]["why"].startswith(
        "no stage added: the epoch budget is spent (20 of 30 trained"
    )
    assert study["finished_trials"] <= 30  # one epoch a trial
