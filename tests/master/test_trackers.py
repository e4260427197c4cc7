"""The trackers' defaults and checks on a real master whose workers run in this process
(ThreadLauncher): `trackers: [mlflow, tensorboard]` logs into the run directory
(`mlruns/`, `tensorboard/`); a spec naming a tracker whose library is missing, or
options of the other tracker, is refused with what to do; relative paths start in the
run directory. Through real Ray: tests/e2e/test_trackers_e2e.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import httpx
import pytest
from mlflow.tracking import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import gridless
from gridless.common.errors import SpecError
from gridless.master.cli.client import ApiClient
from gridless.master.trackers import run_folder
from tests.conftest import TINY_SPEC, Master, tiny_spec


def test_default_trackers_log_into_the_run_directory(tmp_path: Path) -> None:
    m = Master(tmp_path / "run", launcher="thread")
    m.server.start()
    try:
        with ApiClient(m.url) as api:
            api.create_study({**TINY_SPEC, "trackers": ["mlflow", "tensorboard"]})
            api.launch_workers(2)
        with gridless.connect(m.url) as client:
            study = client.study("tiny").wait(timeout=300)
            trials = {t.number: t for t in study.trials()}
            study.close()
        m.app.state.workers.shutdown()
        assert m.app.state.trackers.flush(timeout_s=120)
    finally:
        m.server.stop()
    mlflow = MlflowClient(tracking_uri=(tmp_path / "run" / "mlruns").as_uri())
    experiment = mlflow.get_experiment_by_name("tiny")
    assert experiment is not None
    runs = mlflow.search_runs([experiment.experiment_id], "tags.`gridless.trial` != ''")
    assert sorted(int(r.data.tags["gridless.trial"]) for r in runs) == sorted(trials)
    for run in runs:
        trial = trials[int(run.data.tags["gridless.trial"])]
        assert run.data.tags["gridless.stage"] == str(trial.stage)
        history = mlflow.get_metric_history(run.info.run_id, "val_accuracy")
        assert max(h.step for h in history) == trial.last_epoch
        assert max(h.value for h in history) == pytest.approx(trial.score)
    for number, trial in trials.items():
        folder = tmp_path / "run" / "tensorboard" / "tiny" / f"trial-{number:04d}"
        events = EventAccumulator(str(folder))
        events.Reload()
        steps = [e.step for e in events.Scalars("val_accuracy")]
        assert sorted(steps) == list(range(1, trial.last_epoch + 1))


@pytest.mark.parametrize(
    ("kind", "module", "message"),
    [
        ("mlflow", "mlflow", "trackers: mlflow needs `pip install mlflow (or mlflow-skinny)`"),
        (
            "tensorboard",
            "tensorboardX",
            "trackers: tensorboard needs `pip install tensorboardX tensorboard`",
        ),
    ],
)
def test_a_tracker_whose_library_is_missing_is_refused_at_validation(
    kind: str, module: str, message: str, monkeypatch: pytest.MonkeyPatch, master: Master
) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == module else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(SpecError, match=f"^{message.replace('(', '[(]').replace(')', '[)]')}"):
        tiny_spec(trackers=[kind])
    answer = httpx.post(f"{master.url}/api/v1/studies", json={**TINY_SPEC, "trackers": [kind]})
    assert answer.status_code == 422
    assert answer.json()["detail"].startswith(message)


@pytest.mark.parametrize(
    ("trackers", "message"),
    [
        (["wandb"], "trackers.0.kind: Input should be 'mlflow' or 'tensorboard'"),
        (
            [{"tensorboard": {"tracking_uri": "x"}}],
            "trackers: tracking_uri is an option of mlflow",
        ),
        ([{"mlflow": {"log_dir": "x"}}], "trackers: log_dir is an option of tensorboard"),
        (["mlflow", {"mlflow": {}}], "trackers: each tracker once, but got mlflow, mlflow"),
        ([{"mlflow": {"tracking_url": "x"}}], "trackers.0.tracking_url: unknown key"),
    ],
)
def test_bad_trackers_are_refused_with_the_value(trackers: list[Any], message: str) -> None:
    with pytest.raises(SpecError, match=f"^{message}"):
        tiny_spec(trackers=trackers)


def test_the_shorthand_and_the_long_form_are_one_spec() -> None:
    short = tiny_spec(trackers=["mlflow", "tensorboard"]).trackers
    long = tiny_spec(trackers=[{"mlflow": None}, {"kind": "tensorboard"}]).trackers
    assert short == long
    assert [t.kind for t in short] == ["mlflow", "tensorboard"]


def test_relative_tracker_paths_start_in_the_run_directory(tmp_path: Path) -> None:
    assert run_folder(f"sqlite:///{tmp_path / 'run' / 'gridless.db'}") == tmp_path / "run"
    assert run_folder("postgresql+psycopg://u@h/db") == Path.cwd()
    assert run_folder("sqlite://") == Path.cwd()


def test_a_failing_tracker_costs_its_own_logs_not_the_study_nor_the_other(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the log dir would go", encoding="utf-8")
    m = Master(tmp_path / "run", launcher="thread")
    m.server.start()
    spec = {
        **TINY_SPEC,
        "stages": [{"trials": 2, "epochs": 2}],
        "trackers": ["mlflow", {"tensorboard": {"log_dir": str(blocked)}}],
    }
    try:
        with ApiClient(m.url) as api:
            api.create_study(spec)
            api.launch_workers(1)
        with gridless.connect(m.url) as client:
            study = client.study("tiny").wait(timeout=300)
            assert study.state == "completed"
        m.app.state.workers.shutdown()
        assert m.app.state.trackers.flush(timeout_s=120)
    finally:
        m.server.stop()
    assert "trackers: tensorboard of study tiny stopped logging" in caplog.text
    mlflow = MlflowClient(tracking_uri=(tmp_path / "run" / "mlruns").as_uri())
    experiment = mlflow.get_experiment_by_name("tiny")
    assert experiment is not None
    runs = mlflow.search_runs([experiment.experiment_id], "tags.`gridless.trial` != ''")
    assert len(runs) == 2
    for run in runs:
        steps = [h.step for h in mlflow.get_metric_history(run.info.run_id, "val_accuracy")]
        assert sorted(steps) == [1, 2]
