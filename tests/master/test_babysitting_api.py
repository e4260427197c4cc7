"""Warnings travel from the worker loop through real HTTP into the API."""

from __future__ import annotations

import httpx

from gridless.worker.loop import run_worker
from tests.conftest import Master, tiny_spec


def run_one_trial(master: Master, learning_rate: float) -> dict:  # type: ignore[type-arg]
    spec = tiny_spec(
        name=f"lr-{learning_rate:g}".replace("+", ""),
        space={"reg": {"log_uniform": [1e-6, 1e-5]}},
        fixed={"learning_rate": learning_rate},
        stages=[{"trials": 1, "epochs": 2}],
    )
    study = master.service.create_study(spec)
    run_worker(master.url, master.store_root, "t1", max_trials=1)
    trials = httpx.get(f"{master.url}/api/v1/studies/{study.id}/trials").json()["data"]
    return httpx.get(f"{master.url}/api/v1/trials/{trials[0]['id']}").json()


def test_learning_rate_10_is_marked_diverged_with_a_warning(master: Master) -> None:
    trial = run_one_trial(master, 10.0)
    assert trial["state"] == "diverged"
    assert "diverged" in [w["code"] for w in trial["warnings"]]
    assert trial["metrics"][0]["train_loss"] is None or trial["metrics"][0]["train_loss"] > 0
    assert trial["checkpoints"] == []


def test_learning_rate_1e_7_is_flagged_too_low(master: Master) -> None:
    trial = run_one_trial(master, 1e-7)
    assert trial["state"] == "completed"
    codes = [w["code"] for w in trial["warnings"]]
    assert "lr_too_low" in codes
    assert codes.count("lr_too_low") == 1  # the first occurrence only, not one per epoch
    ratio = trial["metrics"][0]["stats"]["update_ratio"]
    assert 0 < ratio["W1"] < 1e-5
    study = httpx.get(f"{master.url}/api/v1/studies/{trial['study_id']}").json()
    assert study["warning_counts"]["lr_too_low"] == 1


def test_babysitting_statistics_are_served_per_epoch(master: Master) -> None:
    trial = run_one_trial(master, 0.1)
    stats = trial["metrics"][-1]["stats"]
    assert len(stats["loss_history"]) == 20  # 1257 examples in batches of 64
    assert set(stats["update_ratio"]) == {"W1", "b1", "W2", "b2"}
    assert {"act_mean", "act_std", "grad_std"} <= set(stats["layers"][0])
    assert stats["first_layer"]["shape"] == [16, 1, 8, 8]
    assert len(stats["first_layer"]["values"]) == 16 * 64
    assert (stats["chance_loss"], stats["num_classes"]) == (2.302585092994046, 10)
