"""Divergence is evidence, end to end: a user's `train:` function whose trials
diverge above a learning rate, a real master over HTTP and real Ray workers. The first
stage's range lies wholly in the divergent region; the study moves away from it, adds a
stage to get there, and ends with scored trials."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import httpx
import pytest

from gridless.common.space import parse_space
from gridless.common.spec import parse_spec
from tests.conftest import Master, run_with_ray

pytestmark = [pytest.mark.ray, pytest.mark.slow]

TRAIN = '''
import numpy as np


def main(trial):
    """Gradient descent on f(w) = w^2 in float32: it converges for learning rates below
    1 and overflows to inf (a diverged trial, as gridless sees it) well above it."""
    lr = np.float32(trial.params["learning_rate"])
    w = np.float32(1.0)
    with np.errstate(over="ignore", invalid="ignore"):
        for epoch in trial.epochs():
            for _ in range(100):
                w = w - lr * np.float32(2.0) * w
            trial.report(epoch, train_loss=float(w * w), val_loss=float(w * w))
'''


def test_a_study_that_starts_where_every_trial_diverges_moves_away_and_scores(
    master: Master, ray_session: object, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "descent.py").write_text(textwrap.dedent(TRAIN))
    spec = parse_spec(
        {
            "name": "diverging",
            "train": "descent:main",
            "metric": {"name": "val_loss", "mode": "min"},
            "space": {"learning_rate": {"log_uniform": [2.0, 2000.0]}},
            "stages": [{"trials": 6, "epochs": 1}, {"trials": 4, "epochs": 2}],
            "early_stopping": {"rule": "none"},
        }
    )
    study_id = run_with_ray(master, spec, python_path=[str(project)])
    with httpx.Client(base_url=f"{master.url}/api/v1", timeout=60) as api:
        study = api.get(f"/studies/{study_id}").json()
        trials = api.get(f"/studies/{study_id}/trials", params={"limit": 100}).json()["data"]
    assert study["state"] == "completed"
    first, added, last = study["stages"]
    assert [(s["trials"], s["epochs"]) for s in study["stages"]] == [(6, 1), (6, 1), (4, 2)]
    stage1 = [t for t in trials if t["stage"] == 1]
    assert {t["state"] for t in stage1} == {"diverged"}
    decided = first["decisions"]
    assert decided["counts"]["diverged"] == 6
    assert decided["counts"]["scored"] == 0
    (flag,) = decided["flags"]
    assert flag["walk"]
    assert flag["message"].startswith(
        "learning_rate range [2, 2e+03] is too high: 6 of 6 trials diverged"
    )
    assert decided["added_stage"]["index"] == 1
    lr = parse_space(added["space"])["learning_rate"]
    lowest = min(t["params"]["learning_rate"] for t in stage1)
    assert lr.high <= lowest * (1 + 1e-9)  # type: ignore[attr-defined]
    assert math.log10(lr.low) <= math.log10(2.0) - 3.0 + 1e-9  # type: ignore[attr-defined]
    scored = [t for t in trials if t["best_score"] is not None]
    assert scored, "the study ends with scored trials"
    assert study["best_score"] < 1e-3  # converged: the good learning rates were reached
    assert last["state"] == "done"
