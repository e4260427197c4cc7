"""sampler: tpe — the master hands out Optuna TPE's parameters, within the stage's ranges."""

from __future__ import annotations

import math

import httpx
import pytest

from gridless.common.space import parse_space
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
