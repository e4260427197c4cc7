"""`train: "module:function"` trials through a real master over HTTP (no Ray: the worker
loop in this process); the Ray end-to-end runs are in tests/e2e/test_user_code.py."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from gridless.common.checkpoints import parse_name
from gridless.common.messages import EpochReport, ReportBatch
from gridless.common.spec import parse_spec
from gridless.worker.client import MasterClient
from gridless.worker.loop import run_worker
from gridless.worker.trial import load_state
from tests.conftest import Master

FUNCTIONS = '''
import math
import numpy as np


def regression(trial):
    """Least squares by gradient descent on y = 2 x + 3: a tiny lr leaves R^2 negative."""
    rng = np.random.default_rng(trial.seed)
    x = rng.normal(size=200)
    y = 2 * x + 3 + 0.1 * rng.normal(size=200)
    w = b = 0.0
    if (state := trial.restore()) is not None:
        w, b = float(state["w"]), float(state["b"])
    for epoch in trial.epochs():
        for _ in range(30):
            pred = w * x + b
            w -= trial.params["lr"] * 2 * np.mean((pred - y) * x)
            b -= trial.params["lr"] * 2 * np.mean(pred - y)
        mse = float(np.mean((w * x + b - y) ** 2))
        r2 = 1 - mse / float(np.var(y))
        trial.report(epoch, val_loss=mse, val_rmse=math.sqrt(mse), val_r2=r2)
        trial.save({"w": w, "b": b})


def one_shot(trial):
    return (trial.params["lr"] - 0.01) ** 2


def explodes(trial):
    for epoch in trial.epochs():
        trial.report(epoch, val_loss=float("nan") if trial.params["lr"] > 0.01 else 0.5)


def raises(trial):
    raise RuntimeError(f"bad luck with lr={trial.params['lr']:.3g}")


def wrong_metric(trial):
    for epoch in trial.epochs():
        trial.report(epoch, accuracy=0.5)


def saves_without_metric(trial):
    for epoch in trial.epochs():
        trial.report(epoch, val_f1=0.5)
        trial.save({"epoch": epoch})


def climbs_then_saves(trial):
    """val_f1 0.3, 0.6, 0.9, ... by epoch: the docs' older order, report then save."""
    for epoch in trial.epochs():
        trial.report(epoch, val_loss=1.0 / epoch, val_f1=0.3 * epoch)
        trial.save({"epoch": epoch, "lr": trial.params["lr"]})


def climbs_in_one_call(trial):
    for epoch in trial.epochs():
        state = {"epoch": epoch, "lr": trial.params["lr"]}
        trial.report(epoch, checkpoint=state, val_loss=1.0 / epoch, val_f1=0.3 * epoch)


def saves_odd_epochs(trial):
    for epoch in trial.epochs():
        trial.report(epoch, val_loss=1.0 / epoch, val_f1=0.3 * epoch)
        if epoch % 2:
            trial.save({"epoch": epoch})


def undefined_f1(trial):
    """Finite losses, an F1 that is NaN in every other epoch (no positive prediction)."""
    for epoch in trial.epochs():
        f1 = float("nan") if epoch % 2 else 0.5 + trial.params["lr"]
        trial.report(epoch, train_loss=0.5, val_loss=0.6, val_f1=f1)


def not_a_number(trial):
    trial.report(1, val_loss="low")


not_callable = 3
'''


@pytest.fixture
def functions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A user module on the import path, as `gridless run` puts the spec's folder there."""
    folder = tmp_path / "user"
    folder.mkdir()
    (folder / "user_functions.py").write_text(textwrap.dedent(FUNCTIONS))
    monkeypatch.syspath_prepend(str(folder))
    return "user_functions"


def study_of(master: Master, train: str, *, trials: int = 3, **changes: Any) -> int:
    spec = parse_spec(
        {
            "name": train.replace(":", "-").replace("_", "-"),
            "train": train,
            "metric": {"name": "val_r2", "mode": "max"},
            "seed": 1,
            "space": {"lr": {"log_uniform": [1e-4, 0.4]}},
            "stages": [{"trials": trials, "epochs": 3}],
            "early_stopping": {"rule": "none"},
            **changes,
        }
    )
    study = master.service.create_study(spec)
    run_worker(master.url, master.store_root, "t1", max_trials=trials)
    return int(study.id)


def trials_of(master: Master, study_id: int, **params: Any) -> list[dict[str, Any]]:
    answer = httpx.get(f"{master.url}/api/v1/studies/{study_id}/trials", params=params)
    answer.raise_for_status()
    return answer.json()["data"]  # type: ignore[no-any-return]


def test_a_regression_function_is_ranked_by_r2_negative_values_included(
    master: Master, functions: str
) -> None:
    study_id = study_of(master, f"{functions}:regression", trials=6)
    ranked = trials_of(master, study_id)
    scores = [t["best_score"] for t in ranked]
    assert all(t["state"] == "completed" for t in ranked)
    assert scores == sorted(scores, reverse=True)
    assert min(scores) < 0 < max(scores), scores  # a tiny lr leaves R^2 below zero
    assert ranked[0]["best_metrics"]["val_r2"] == scores[0]
    by_rmse = [
        t["best_metrics"]["val_rmse"] for t in trials_of(master, study_id, sort="metrics.val_rmse")
    ]
    assert by_rmse == sorted(by_rmse)
    by_r2 = [
        t["best_metrics"]["val_r2"] for t in trials_of(master, study_id, sort="-metrics.val_r2")
    ]
    assert by_r2 == scores

    best = httpx.get(f"{master.url}/api/v1/trials/{ranked[0]['id']}").json()
    assert [m["epoch"] for m in best["metrics"]] == [1, 2, 3]
    assert set(best["metrics"][0]["metrics"]) == {"val_loss", "val_rmse", "val_r2"}
    assert best["metrics"][-1]["score"] == best["metrics"][-1]["metrics"]["val_r2"]
    checkpoint = best["checkpoints"][-1]
    name = parse_name(checkpoint["path"].split("/")[-1])
    assert (name.metric, name.score) == ("r2", round(checkpoint["score"], 4))
    state = load_state(Path(master.store_root) / checkpoint["path"])
    assert set(state) == {"w", "b"}

    worst = ranked[-1]
    worst_ck = httpx.get(f"{master.url}/api/v1/trials/{worst['id']}").json()["checkpoints"]
    assert worst_ck[-1]["path"].split("/")[-1].startswith("r2_-")


def test_a_function_that_returns_a_number_is_a_one_epoch_trial(
    master: Master, functions: str
) -> None:
    study_id = study_of(master, f"{functions}:one_shot", metric={"name": "regret", "mode": "min"})
    ranked = trials_of(master, study_id)
    assert [t["last_epoch"] for t in ranked] == [1, 1, 1]
    assert all(t["state"] == "completed" for t in ranked)
    expected = sorted((t["params"]["lr"] - 0.01) ** 2 for t in ranked)
    assert [t["best_score"] for t in ranked] == pytest.approx(expected)


def test_nan_is_divergence_and_never_ranks_above_a_finite_trial(
    master: Master, functions: str
) -> None:
    study_id = study_of(master, f"{functions}:explodes", trials=6, metric="val_loss", seed=5)
    ranked = trials_of(master, study_id)
    states = [(t["state"], t["best_score"]) for t in ranked]
    diverged = [t for t in ranked if t["state"] == "diverged"]
    assert diverged, states
    assert len(diverged) < len(ranked), states
    first_diverged = ranked.index(diverged[0])
    assert all(t["state"] == "diverged" for t in ranked[first_diverged:]), states
    assert all(t["best_score"] is None for t in diverged)
    assert all("diverged" in [w["code"] for w in t["warnings"]] for t in diverged)


@pytest.mark.parametrize(
    ("function", "error"),
    [
        ("raises", "RuntimeError: bad luck with lr="),
        (
            "wrong_metric",
            "the trial reported accuracy but never 'val_r2', the study's metric: report it, "
            "or name one of those in the spec's metric",
        ),
        ("not_a_number", "TypeError: trial.report: val_loss must be a number, but got str"),
        (
            "saves_without_metric",
            "ValueError: trial.save: epoch 1 reported val_f1 but not 'val_r2', the study's metric",
        ),
        ("not_callable", "has no callable 'not_callable'"),
        ("missing", "has no callable 'missing'"),
    ],
)
def test_a_failing_function_stores_why(
    master: Master, functions: str, function: str, error: str
) -> None:
    study_id = study_of(master, f"{functions}:{function}", trials=1)
    (trial,) = trials_of(master, study_id)
    assert trial["state"] == "failed"
    assert error in trial["error"]


def test_a_module_that_does_not_import_fails_its_trials_with_the_reason(
    master: Master,
) -> None:
    study_id = study_of(master, "no_such_module_here:main", trials=1)
    (trial,) = trials_of(master, study_id)
    assert trial["state"] == "failed"
    assert "cannot import 'no_such_module_here' (ModuleNotFoundError" in trial["error"]


def test_a_trainer_traceback_names_the_users_line(master: Master, functions: str) -> None:
    study_id = study_of(master, f"{functions}:raises", trials=1)
    (trial,) = trials_of(master, study_id)
    assert 'user_functions.py", line' in trial["error"]
    assert "in raises" in trial["error"]


def test_reports_of_user_metrics_are_refused_with_bad_names(
    master: Master, functions: str
) -> None:
    """The wire rule behind `trial.report`'s names: 422 naming the field."""
    (trial,) = trials_of(master, study_of(master, f"{functions}:regression", trials=1))
    body = {"worker_id": "w1", "attempt": 0, "epoch": 9, "metrics": {"stats": 1.0}}
    answer = httpx.post(f"{master.url}/api/v1/trials/{trial['id']}/reports", json=body)
    assert answer.status_code == 422
    assert "metrics.stats" in answer.text


def test_np_arrays_in_state_round_trip(master: Master, functions: str) -> None:
    study_id = study_of(master, f"{functions}:regression", trials=1)
    (trial,) = trials_of(master, study_id)
    detail = httpx.get(f"{master.url}/api/v1/trials/{trial['id']}").json()
    state = load_state(Path(master.store_root) / detail["checkpoints"][-1]["path"])
    assert isinstance(state["w"], float)
    assert np.isfinite(state["w"])


def test_ensembles_of_a_function_study_are_refused_with_the_reason(
    master: Master, functions: str
) -> None:
    study_id = study_of(master, f"{functions}:regression", trials=1)
    answer = httpx.post(f"{master.url}/api/v1/studies/{study_id}/ensembles")
    assert answer.status_code == 422
    assert "a function of yours" in answer.json()["detail"]


F1_TARGET = {"metric": {"name": "val_f1", "mode": "max"}, "stop": {"target": 0.85}}


@pytest.mark.parametrize("function", ["climbs_then_saves", "climbs_in_one_call"])
def test_the_epoch_that_reaches_the_target_keeps_its_checkpoint_in_one_message(
    master: Master, functions: str, function: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[tuple[int, bool]] = []
    one, many = MasterClient.report, MasterClient.reports

    def report(self: MasterClient, trial_id: int, report: EpochReport) -> Any:
        sent.append((report.epoch, report.checkpoint is not None))
        return one(self, trial_id, report)

    def reports(self: MasterClient, trial_id: int, batch: ReportBatch) -> Any:
        sent.extend((r.epoch, r.checkpoint is not None) for r in batch.reports)
        return many(self, trial_id, batch)

    monkeypatch.setattr(MasterClient, "report", report)
    monkeypatch.setattr(MasterClient, "reports", reports)
    study_id = study_of(
        master,
        f"{functions}:{function}",
        trials=1,
        stages=[{"trials": 1, "epochs": 5}],
        **F1_TARGET,
    )
    (trial,) = trials_of(master, study_id)
    assert trial["state"] == "stopped"
    assert trial["best_epoch"] == 3  # 0.9 >= 0.85: the study ends at epoch 3
    detail = httpx.get(f"{master.url}/api/v1/trials/{trial['id']}").json()
    assert max(c["epoch"] for c in detail["checkpoints"]) == 3
    best = next(c for c in detail["checkpoints"] if c["epoch"] == 3)
    assert load_state(Path(master.store_root) / best["path"])["epoch"] == 3
    # one message an epoch, with its file (fast epochs may send 4 and 5 before the stop
    # comes back: the master refuses them, the trial being over)
    assert sent[:3] == [(1, True), (2, True), (3, True)]
    assert len({epoch for epoch, _ in sent}) == len(sent)
    assert "best_epoch_unsaved" not in [w["code"] for w in trial["warnings"]]


def test_a_best_epoch_without_a_checkpoint_is_said(master: Master, functions: str) -> None:
    study_id = study_of(
        master,
        f"{functions}:saves_odd_epochs",
        trials=1,
        stages=[{"trials": 1, "epochs": 6}],
        metric={"name": "val_f1", "mode": "max"},
        stop={"target": 1.15},
    )
    (trial,) = trials_of(master, study_id)
    assert (trial["state"], trial["best_epoch"]) == ("stopped", 4)
    (note,) = [w for w in trial["warnings"] if w["code"] == "best_epoch_unsaved"]
    assert note["message"].startswith("best epoch 4 has no checkpoint (saved: epochs 1, 3)")
    assert "pass checkpoint= to trial.report" in note["message"]


def test_a_nan_metric_of_finite_losses_is_no_divergence(master: Master, functions: str) -> None:
    study_id = study_of(
        master, f"{functions}:undefined_f1", trials=2, metric={"name": "val_f1", "mode": "max"}
    )
    for trial in trials_of(master, study_id):
        assert trial["state"] == "completed"
        codes = [w["code"] for w in trial["warnings"]]
        assert "diverged" not in codes
        assert "metric_undefined" in codes
        assert trial["best_epoch"] == 2  # the one epoch with a defined F1
