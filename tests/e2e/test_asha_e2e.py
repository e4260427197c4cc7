"""ASHA through a real master and real Ray workers: a `train:` function whose
learning curves are known; the trials ASHA stops are the ones its rule names."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from gridless.common.db import EpochMetricRow, TrialRow
from gridless.common.spec import parse_spec
from tests.conftest import Master, run_with_ray
from tests.master.test_early_stopping import ray_tune

pytestmark = [pytest.mark.slow, pytest.mark.ray]

CURVES = """
def main(trial):
    # a known curve: the score grows linearly to q, so every epoch ranks trials by q
    for epoch in trial.epochs():
        trial.report(epoch, val_accuracy=trial.params["q"] * epoch / trial.max_epochs)
"""

EPOCHS = 9


def asha_spec(name: str, qs: list[float], trials: int) -> Any:
    return parse_spec(
        {
            "name": name,
            "train": "curves:main",
            "metric": "val_accuracy",
            "seed": 5,
            "space": {"q": {"uniform": [0.05, 1.0]}},
            "stages": [{"trials": trials, "epochs": EPOCHS}],
            "enqueue": [{"q": q} for q in qs],
            "early_stopping": {"rule": "asha", "reduction_factor": 3},  # rungs: 1, 3
        }
    )


def trials_and_order(master: Master, study_id: int) -> tuple[list[TrialRow], list[Any]]:
    with master.app.state.context.sessions() as s:
        trials = list(
            s.scalars(
                select(TrialRow).where(TrialRow.study_id == study_id).order_by(TrialRow.number)
            )
        )
        ids = [t.id for t in trials]
        rows = list(
            s.execute(
                select(EpochMetricRow.trial_id, EpochMetricRow.epoch, EpochMetricRow.score)
                .where(EpochMetricRow.trial_id.in_(ids))
                .order_by(EpochMetricRow.id)
            )
        )
    return trials, rows


def test_asha_stops_the_trials_its_rule_names_one_worker(
    master: Master, tmp_path: Path, ray_session: object
) -> None:
    user = tmp_path / "user"
    user.mkdir()
    (user / "curves.py").write_text(textwrap.dedent(CURVES))
    qs = [0.5, 0.3, 0.8, 0.1, 0.9, 0.4, 0.7, 0.2]
    study_id = run_with_ray(
        master, asha_spec("asha-one", qs, 8), workers=1, python_path=[str(user)]
    )
    trials, _ = trials_and_order(master, study_id)
    # One worker: trials arrive in order. At rung 1 each trial must reach the 2/3 quantile
    # of those before it; at rung 3 likewise (worked out in docs/search-controls.md).
    got = {t.number: (t.state, t.last_epoch) for t in trials}
    assert got == {
        0: ("completed", 9),
        1: ("stopped", 1),  # 0.3 < 0.5
        2: ("completed", 9),
        3: ("stopped", 1),  # 0.1 < 0.6
        4: ("completed", 9),
        5: ("stopped", 1),  # 0.4 < 0.7
        6: ("stopped", 3),  # at rung 3: 0.7 < 0.833 (trials 0, 2, 4 reached it)
        7: ("stopped", 1),
    }
    stopped = {t.number: t.error for t in trials if t.state == "stopped"}
    assert stopped[6].startswith("early stop (ASHA): val_accuracy 0.2333 at epoch 3 (rung 2 of 2)")
    assert "keeps the top 1/3 of the 3 trials of its stage" in stopped[6]


def test_asha_with_two_workers_decides_as_ray_tune_on_the_order_reports_arrived(
    master: Master, tmp_path: Path, ray_session: object
) -> None:
    user = tmp_path / "user"
    user.mkdir()
    (user / "curves.py").write_text(textwrap.dedent(CURVES))
    qs = [0.62, 0.35, 0.91, 0.18, 0.77, 0.44, 0.56, 0.83, 0.27, 0.69, 0.12, 0.95]
    study_id = run_with_ray(
        master, asha_spec("asha-two", qs, 12), workers=2, python_path=[str(user)]
    )
    trials, rows = trials_and_order(master, study_id)
    events = [(trial_id, epoch, score) for trial_id, epoch, score in rows]
    stops = ray_tune(events, epochs=EPOCHS, min_epochs=1, factor=3.0, maximize=True)
    expected = {
        (t, e) for (t, e, _), stop in zip(events, stops, strict=True) if stop and e < EPOCHS
    }
    got = {(t.id, t.last_epoch) for t in trials if t.state == "stopped"}
    assert got == expected
    assert 4 <= len(got) <= 10
    assert {t.state for t in trials} == {"completed", "stopped"}
    assert all(t.error.startswith("early stop (ASHA)") for t in trials if t.state == "stopped")
