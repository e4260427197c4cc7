"""Coarse-to-fine on digits through real Ray workers, checked through the API."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import httpx
import pytest

from gridless.common.space import parse_space
from gridless.common.spec import load_spec, parse_spec
from tests.conftest import Master, run_with_ray

pytestmark = [pytest.mark.ray, pytest.mark.slow]
EXAMPLES = Path(__file__).parents[2] / "examples"


def run(master: Master, spec: Any) -> dict[str, Any]:
    study_id = run_with_ray(master, spec)
    return dict(httpx.get(f"{master.url}/api/v1/studies/{study_id}").json())


def test_three_stages_narrow_every_numeric_range_and_grow_the_epochs(
    master: Master, ray_session: object
) -> None:
    spec = parse_spec(
        {
            "name": "narrowing",
            "space": {
                "learning_rate": {"log_uniform": [1e-4, 10.0]},
                "reg": {"log_uniform": [1e-7, 1.0]},
                "dropout": {"uniform": [0.0, 0.9]},
            },
            "early_stopping": {"rule": "none"},
            "stages": [
                {"trials": 30, "epochs": 1},
                {"trials": 15, "epochs": 3},
                {"trials": 8, "epochs": 8},
            ],
        }
    )
    study = run(master, spec)
    stages = study["stages"]
    assert [s["epochs"] for s in stages] == [1, 3, 8]
    assert [s["state"] for s in stages] == ["done", "done", "done"]
    for before, after in itertools.pairwise(stages):
        old, new = parse_space(before["space"]), parse_space(after["space"])
        for name in ("learning_rate", "reg", "dropout"):
            o, n = old[name], new[name]
            width = lambda d: d.to_scale(d.high) - d.to_scale(d.low)  # noqa: E731
            assert o.low <= n.low, (name, before["index"])
            assert n.high <= o.high, (name, before["index"])
            assert width(n) < width(o), (name, before["index"])
        assert {d["param"] for d in before["decisions"]["decisions"]} == {
            "learning_rate",
            "reg",
            "dropout",
        }
    assert study["best_score"] >= 0.97


def test_a_range_short_of_the_good_region_is_flagged_and_extended(
    master: Master, ray_session: object
) -> None:
    border = run(master, load_spec(EXAMPLES / "digits-border.yaml"))
    wide = run(master, load_spec(EXAMPLES / "digits-wide.yaml"))
    lr_flags = [f for f in border["border_flags"] if f["param"] == "learning_rate"]
    assert lr_flags[0]["edge"] == "upper"
    assert lr_flags[0]["stage"] == 1
    assert lr_flags[0]["message"].startswith("learning_rate range [1e-06, 0.001] is too low")
    later = [parse_space(s["space"])["learning_rate"].high for s in border["stages"][1:]]
    assert max(later) > 1e-3, "a later stage's range reaches past the flagged edge"
    assert border["best_score"] >= wide["best_score"] - 0.01, (
        border["best_score"],
        wide["best_score"],
    )


DESCENT = '''
import numpy as np

CURVATURES = np.array([1.0, 3.0, 10.0, 30.0, 50.0])


def main(trial):
    """Gradient descent on a badly conditioned quadratic, 40 steps an epoch: the loss
    falls faster as the learning rate grows, up to about 0.03, and diverges above 0.04.
    `width` changes nothing but a 2 % noise on the validation loss (a parameter the
    scores ignore)."""
    lr = float(trial.params["lr"])
    noise = np.random.default_rng(int(trial.params["width"])).normal()
    w = np.ones_like(CURVATURES)
    with np.errstate(over="ignore", invalid="ignore"):
        for epoch in trial.epochs():
            for _ in range(40):
                w = w - lr * CURVATURES * w
            loss = float(0.5 * np.sum(CURVATURES * w * w))
            trial.report(epoch, train_loss=loss, val_loss=loss * (1 + 0.02 * noise))
'''


def test_a_users_range_set_too_low_walks_up_and_a_flat_parameter_stays(
    master: Master, ray_session: object, tmp_path: Path
) -> None:
    """A user's function (no babysitting warnings, no chance level: only its scores) with
    its learning-rate range three decades below the good one. The scores rise with lr,
    so the range walks up past the user's range (announced in the flags), never down;
    `width`, which the scores ignore, is never extended; the epochs trained stay within
    the plan's."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "descent_user.py").write_text(DESCENT)
    plan = [{"trials": 20, "epochs": 1}, {"trials": 10, "epochs": 2}, {"trials": 6, "epochs": 3}]
    spec = parse_spec(
        {
            "name": "too-low",
            "train": "descent_user:main",
            "metric": {"name": "val_loss", "mode": "min"},
            "space": {
                "lr": {"log_uniform": [1e-5, 1e-4]},
                "width": {"int_log_uniform": [16, 512]},
            },
            "stages": plan,
            "early_stopping": {"rule": "none"},
        }
    )
    study_id = run_with_ray(master, spec, python_path=[str(project)])
    with httpx.Client(base_url=f"{master.url}/api/v1", timeout=60) as api:
        study = api.get(f"/studies/{study_id}").json()
        trials = api.get(f"/studies/{study_id}/trials", params={"limit": 500}).json()["data"]
    assert study["state"] == "completed"
    flags = study["border_flags"]
    lr_flags = [f for f in flags if f["param"] == "lr"]
    assert lr_flags, "the lr range was flagged"
    assert all(f["edge"] == "upper" for f in lr_flags), lr_flags  # never a walk down
    assert lr_flags[0]["stage"] == 1
    assert lr_flags[0]["beyond_range"]
    assert "goes past your range [1e-05, 0.0001]" in lr_flags[0]["message"]
    highs = [parse_space(s["space"])["lr"].high for s in study["stages"]]  # type: ignore[attr-defined]
    assert max(highs) > 1e-3  # more than a decade past the user's range
    assert max(highs) <= 0.1 * (1 + 1e-9)  # its default limit: 3 decades above
    assert study["best_score"] < 1.0  # the range's best at 3 epochs is 20.6
    # the flat parameter: no flag, and no stage's range leaves the user's
    assert not [f for f in flags if f["param"] == "width"]
    for stage in study["stages"]:
        width = parse_space(stage["space"])["width"]
        assert 16 <= width.low <= width.high <= 512  # type: ignore[attr-defined]
    # the plan's epochs: 20 + 20 + 18; added stages take theirs out of the later ones
    trained = sum(t["last_epoch"] for t in trials)
    assert trained <= sum(st["trials"] * st["epochs"] for st in plan), trained
