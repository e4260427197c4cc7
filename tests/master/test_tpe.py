"""sampler: tpe — the master hands out Optuna TPE's parameters, within the stage's ranges."""

from __future__ import annotations

import math
from typing import Any

import httpx
import pytest

from gridless.common.space import LogUniform, parse_space
from gridless.master import tpe
from gridless.master.tpe import INFEASIBLE, TpePoint, to_optuna, tpe_study
from gridless.worker.loop import run_worker
from tests.conftest import TINY_SPEC, Master, tiny_spec


def test_tpe_parameters_come_from_the_master_and_stay_in_range(master: Master) -> None:
    spec = {**TINY_SPEC, "sampler": "tpe", "stages": [{"trials": 14, "epochs": 1}]}
    study = master.service.create_study(tiny_spec(**{k: spec[k] for k in ("sampler", "stages")}))
    space = parse_space(spec["space"])
    with httpx.Client(base_url=master.url + "/api/v1") as api:
        seen = []
        for _ in range(14):
            job = api.post("/workers/claim", json={"worker_id": "w1"}).json()["assignment"]
            assert job["params"] is not None  # chosen by the master, not sampled by the worker
            assert all(space[k].contains(v) for k, v in job["params"].items())
            seen.append(job["params"])
            tid = job["trial_id"]
            api.post(
                f"/trials/{tid}/start",
                json={"worker_id": "w1", "attempt": 0, "params": job["params"]},
            )
            # a smooth score peaked at learning_rate 0.1 lets TPE concentrate there
            score = math.exp(-abs(math.log10(job["params"]["learning_rate"]) + 1.0))
            api.post(
                f"/trials/{tid}/reports",
                json={"worker_id": "w1", "attempt": 0, "epoch": 1, "val_accuracy": score},
            )
            api.post(
                f"/trials/{tid}/finish",
                json={"worker_id": "w1", "attempt": 0, "state": "completed"},
            )
    assert master.service.get_study(study.id).spec["sampler"] == "tpe"
    # after TPE's 10 random start-up trials, its suggestions sit closer to the peak
    start = [abs(math.log10(p["learning_rate"]) + 1) for p in seen[:10]]
    guided = [abs(math.log10(p["learning_rate"]) + 1) for p in seen[10:]]
    assert sum(guided) / len(guided) < sum(start) / len(start)


def test_tpe_study_runs_end_to_end_with_a_worker(master: Master) -> None:
    master.service.create_study(tiny_spec(sampler="tpe"))
    assert run_worker(master.url, master.store_root, "t1") == 6
    trials, count = master.service.ranked_trials(1, limit=10, offset=0)
    assert count == 6
    assert {t.state for t in trials} <= {"completed", "stopped"}
    assert trials[0].best_score > 0.5


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_the_sampler_is_part_of_the_spec(sampler: str) -> None:
    assert tiny_spec(sampler=sampler).sampler == sampler


# -- divergence is evidence (issue 20) -------------------------------------------------

LR = {"learning_rate": LogUniform(1e-4, 10.0)}


def diverges_above_one(lr: float) -> float | None:
    """The good learning rates sit just below where training diverges (lr > 1)."""
    return None if lr > 1.0 else 1 - 0.2 * abs(math.log10(lr))


def proposals_in_the_divergent_region(*, tell: bool, seed: int, n: int = 40) -> int:
    """Sequential TPE on `diverges_above_one`: how many of the trials after the 10
    random start-up ones propose lr > 1, with or without telling TPE of divergence."""
    space = {k: to_optuna(d) for k, d in LR.items()}
    points: list[TpePoint] = []
    divergent = 0
    for i in range(n):
        told = points if tell else [p for p in points if p.feasible]
        lr = (
            tpe_study(told, LR, maximize=True, seed=seed * 1000 + i)
            .ask(space)
            .params["learning_rate"]
        )
        score = diverges_above_one(lr)
        points.append(TpePoint({"learning_rate": lr}, score, feasible=score is not None))
        divergent += i >= 10 and score is None
    return divergent


def test_optuna_receives_diverged_and_failed_trials_as_infeasible() -> None:
    points = [
        TpePoint({"learning_rate": 0.1}, 0.9),
        TpePoint({"learning_rate": 0.01}, 0.6),
        TpePoint({"learning_rate": 5.0}, None, feasible=False),  # diverged in epoch 1
        TpePoint({"learning_rate": 3.0}, 0.4, feasible=False),  # diverged after scoring
        TpePoint({"learning_rate": 100.0}, None, feasible=False),  # outside: not told
        TpePoint({"learning_rate": 0.5}, None),  # stopped before it scored: nothing to learn
    ]
    trials = tpe_study(points, LR, maximize=True, seed=0).get_trials(deepcopy=False)
    told = {t.params["learning_rate"]: (t.value, t.constraints) for t in trials}
    assert told == {
        0.1: (0.9, {}),
        0.01: (0.6, {}),
        5.0: (0.6, {INFEASIBLE: 1.0}),  # the worst feasible value; TPE ranks it last
        3.0: (0.6, {INFEASIBLE: 1.0}),
    }


def test_told_about_divergence_tpe_proposes_far_fewer_divergent_learning_rates() -> None:
    blind = [proposals_in_the_divergent_region(tell=False, seed=s) for s in range(3)]
    told = [proposals_in_the_divergent_region(tell=True, seed=s) for s in range(3)]
    # measured: blind 27-30 of 30, told 10-12 of 30 (seeds 0-5)
    assert max(told) < min(blind)
    assert sum(told) <= 0.6 * sum(blind)


def test_the_master_tells_tpe_of_every_diverged_trial(
    master: Master, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[list[TpePoint]] = []

    def spy(points: list[TpePoint], *args: Any, **kwargs: Any) -> Any:
        seen.append(list(points))
        return tpe_study(points, *args, **kwargs)

    monkeypatch.setattr(tpe, "tpe_study", spy)
    space = {"learning_rate": {"log_uniform": [1e-4, 10.0]}}
    stages = [{"trials": 24, "epochs": 1}]
    master.service.create_study(tiny_spec(sampler="tpe", space=space, stages=stages))
    diverged = 0
    with httpx.Client(base_url=master.url + "/api/v1", timeout=60) as api:
        for i in range(24):
            job = api.post("/workers/claim", json={"worker_id": "w1"}).json()["assignment"]
            tid, body = job["trial_id"], {"worker_id": "w1", "attempt": 0}
            api.post(f"/trials/{tid}/start", json={**body, "params": job["params"]})
            score = diverges_above_one(job["params"]["learning_rate"])
            if score is None:
                diverged += i >= 10
                api.post(
                    f"/trials/{tid}/reports",
                    json={**body, "epoch": 1, "train_loss": None, "diverged": True},
                )
                continue
            api.post(f"/trials/{tid}/reports", json={**body, "epoch": 1, "val_accuracy": score})
            api.post(f"/trials/{tid}/finish", json={**body, "state": "completed"})
    last = seen[-1]
    assert len(last) == 23  # every finished trial of the stage, the diverged ones too
    infeasible = [p for p in last if not p.feasible]
    assert infeasible, "some trials diverged"
    assert all(p.params["learning_rate"] > 1.0 for p in infeasible)
    assert diverged <= 8  # of the 14 TPE proposed; blind, TPE put nearly all of them there
