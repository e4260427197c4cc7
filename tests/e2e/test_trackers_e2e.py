"""`trackers: [mlflow, tensorboard]` end to end: a study through real Ray workers logs
every trial's every epoch to an MLflow file store and a TensorBoard log dir, read back
with MLflow's own client and TensorBoard's own event reader and compared with the
master's database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient
from sqlalchemy import select
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gridless.common.db import EpochMetricRow, TrialRow, session_scope
from tests.conftest import TINY_SPEC, Master, run_with_ray, tiny_spec

pytestmark = [pytest.mark.slow, pytest.mark.ray]


def stored_epochs(
    master: Master, study_id: int
) -> tuple[dict[int, dict[int, dict[str, float]]], dict[int, dict[str, Any]]]:
    """trial number -> epoch -> the metrics the master stored (the finite ones), and
    trial number -> params."""
    found: dict[int, dict[int, dict[str, float]]] = {}
    with session_scope(master.app.state.context.sessions) as s:
        rows = s.execute(
            select(TrialRow.number, EpochMetricRow.epoch, EpochMetricRow.metrics)
            .join(EpochMetricRow, EpochMetricRow.trial_id == TrialRow.id)
            .where(TrialRow.study_id == study_id)
        ).all()
        params = dict(
            s.execute(
                select(TrialRow.number, TrialRow.params).where(TrialRow.study_id == study_id)
            ).all()
        )
    for number, epoch, metrics in rows:
        found.setdefault(number, {})[epoch] = {k: v for k, v in metrics.items() if v is not None}
    return found, params


def test_every_trials_every_epoch_reaches_mlflow_and_tensorboard(
    ray_session: Any, tmp_path: Path
) -> None:
    uri = (tmp_path / "mlflow-store").as_uri()  # file:///...: an MLflow file store
    spec = tiny_spec(
        name="tracked",
        trackers=[
            {"mlflow": {"tracking_uri": uri}},
            {"tensorboard": {"log_dir": str(tmp_path / "tb")}},
        ],
    )
    master = Master(tmp_path / "run")
    master.server.start()
    try:
        study_id = run_with_ray(master, spec, workers=2)
        assert master.app.state.trackers.flush(timeout_s=120)
        epochs, params = stored_epochs(master, study_id)
    finally:
        master.server.stop()
    assert len(epochs) == 6
    assert sum(len(e) for e in epochs.values()) == 4 * 1 + 2 * 2

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("tracked")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    (parent,) = [r for r in runs if r.data.tags.get("gridless.role") == "study"]
    trials = {
        int(r.data.tags["gridless.trial"]): r for r in runs if "gridless.trial" in r.data.tags
    }
    assert set(trials) == set(epochs)
    for number, by_epoch in epochs.items():
        run = trials[number]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.info.run_name == f"trial-{number:04d}"
        assert run.info.status == "FINISHED"
        assert run.data.params == {k: str(v) for k, v in params[number].items()}
        names = {name for metrics in by_epoch.values() for name in metrics}
        assert {"val_accuracy", "train_loss"} <= names
        for name in names:
            history = client.get_metric_history(run.info.run_id, name)
            logged = sorted((m.step, m.value) for m in history)
            wanted = sorted((e, m[name]) for e, m in by_epoch.items() if name in m)
            assert logged == wanted, (number, name)  # doubles, as the master stored them

    for number, by_epoch in epochs.items():
        events = EventAccumulator(str(tmp_path / "tb" / "tracked" / f"trial-{number:04d}"))
        events.Reload()
        for name in {name for metrics in by_epoch.values() for name in metrics}:
            logged = sorted((e.step, e.value) for e in events.Scalars(name))
            wanted = sorted((e, m[name]) for e, m in by_epoch.items() if name in m)
            assert [step for step, _ in logged] == [step for step, _ in wanted], (number, name)
            values = [value for _, value in logged]  # TensorBoard keeps float32
            assert values == pytest.approx([v for _, v in wanted], rel=1e-6, abs=1e-7)


def test_a_spec_without_trackers_writes_no_tracker_files(ray_session: Any, tmp_path: Path) -> None:
    master = Master(tmp_path / "run")
    master.server.start()
    try:
        run_with_ray(master, tiny_spec(**{**TINY_SPEC, "stages": [{"trials": 2, "epochs": 1}]}))
        assert master.app.state.trackers.flush()
    finally:
        master.server.stop()
    assert not (tmp_path / "run" / "mlruns").exists()
    assert not (tmp_path / "run" / "tensorboard").exists()
