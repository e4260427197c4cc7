"""sampler: tpe — the master hands out Optuna TPE's parameters, within the
stage's ranges; diverged trials are told to TPE as infeasible."""

from __future__ import annotations

import math
import time
from typing import Any

import httpx
import optuna
import pytest

from gridless.common.metric import Metric
from gridless.common.space import LogUniform, parse_space, sample_params
from gridless.common.spec import trial_rng
from gridless.master.sampler_state import N_STARTUP
from gridless.master.tpe import INFEASIBLE, TpePoint, to_optuna, tpe_study
from gridless.worker.loop import run_worker
from tests.conftest import TINY_SPEC, Master, tiny_spec

MAX = Metric.of("val_accuracy", maximize=True)


def claim_job(api: httpx.Client, worker: str = "w1") -> dict[str, Any]:
    """A claim as a worker makes it: while the model prepares, the master says wait."""
    for _ in range(600):
        answer = api.post("/workers/claim", json={"worker_id": worker}).json()
        if answer["assignment"] is not None:
            return dict(answer["assignment"])
        assert answer["action"] == "wait"
        time.sleep(answer["retry_after_s"])
    raise AssertionError("no assignment in 600 claims")


def test_tpe_parameters_come_from_the_master_and_stay_in_range(master: Master) -> None:
    spec = {**TINY_SPEC, "sampler": "tpe", "stages": [{"trials": 16, "epochs": 1}]}
    study = master.service.create_study(tiny_spec(**{k: spec[k] for k in ("sampler", "stages")}))
    space = parse_space(spec["space"])
    with httpx.Client(base_url=master.url + "/api/v1", timeout=60) as api:
        seen, chosen = [], []
        for _ in range(16):
            job = claim_job(api)
            params = job["params"]
            chosen.append(params is not None)
            if params is None:  # TPE's start-up: the worker samples, as worker/loop.py does
                rng = trial_rng(job["seed"], job["trial_number"])
                params = sample_params(parse_space(job["space"]), rng)
            assert all(space[k].contains(v) for k, v in params.items())
            seen.append(params)
            tid = job["trial_id"]
            api.post(
                f"/trials/{tid}/start", json={"worker_id": "w1", "attempt": 0, "params": params}
            )
            # a smooth score peaked at learning_rate 0.1 lets TPE concentrate there
            score = math.exp(-abs(math.log10(params["learning_rate"]) + 1.0))
            api.post(
                f"/trials/{tid}/reports",
                json={"worker_id": "w1", "attempt": 0, "epoch": 1, "val_accuracy": score},
            )
            api.post(
                f"/trials/{tid}/finish",
                json={"worker_id": "w1", "attempt": 0, "state": "completed"},
            )
    assert master.service.get_study(study.id).spec["sampler"] == "tpe"
    # the first N_STARTUP sampled by the workers, the rest chosen by the master's model
    assert chosen == [False] * N_STARTUP + [True] * (16 - N_STARTUP)
    start = [abs(math.log10(p["learning_rate"]) + 1) for p in seen[:N_STARTUP]]
    guided = [abs(math.log10(p["learning_rate"]) + 1) for p in seen[N_STARTUP:]]
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


# -- divergence is evidence ------------------------------------------------------------

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
            tpe_study(told, LR, objective=MAX, seed=seed * 1000 + i)
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
    trials = tpe_study(points, LR, objective=MAX, seed=0).get_trials(deepcopy=False)
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


def test_the_master_tells_tpe_of_every_diverged_trial(master: Master) -> None:
    space = {"learning_rate": {"log_uniform": [1e-4, 10.0]}}
    stages = [{"trials": 24, "epochs": 1}]
    study = master.service.create_study(tiny_spec(sampler="tpe", space=space, stages=stages))
    diverged = 0
    with httpx.Client(base_url=master.url + "/api/v1", timeout=60) as api:
        for _ in range(24):
            job = claim_job(api)
            tid, body = job["trial_id"], {"worker_id": "w1", "attempt": 0}
            params = job["params"] or sample_params(
                parse_space(job["space"]), trial_rng(job["seed"], job["trial_number"])
            )
            api.post(f"/trials/{tid}/start", json={**body, "params": params})
            score = diverges_above_one(params["learning_rate"])
            if score is None:
                diverged += job["params"] is not None
                api.post(
                    f"/trials/{tid}/reports",
                    json={**body, "epoch": 1, "train_loss": None, "diverged": True},
                )
                continue
            api.post(f"/trials/{tid}/reports", json={**body, "epoch": 1, "val_accuracy": score})
            api.post(f"/trials/{tid}/finish", json={**body, "state": "completed"})
    sampler = master.app.state.protocol.sampler
    assert sampler.settle()
    view = sampler.states[study.id].view
    told = view.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    assert len(told) >= 23  # every finished trial, the diverged ones too (the last may wait)
    infeasible = [t for t in told if t.constraints]
    assert infeasible, "some trials diverged"
    assert all(t.params["learning_rate"] > 1.0 for t in infeasible)
    assert diverged <= 8  # of the 14 TPE proposed; blind, TPE put nearly all of them there
