"""The user's own code, end to end through Ray: the PyTorch example as a plain
script and as a 3-stage study, a regression study ranked by R², a user project with its
own `common` package, and a lost function trial resumed from `trial.restore()`."""

from __future__ import annotations

import difflib
import os
import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

import gridless
from gridless.common.checkpoints import parse_name
from gridless.common.db import EpochMetricRow, TrialRow
from gridless.common.spec import parse_spec
from gridless.master.app import create_app
from gridless.master.launcher import RayLauncher
from gridless.master.server import BackgroundServer
from tests.net import free_port, wait_for, wait_for_master

ROOT = Path(__file__).parents[2]
EXAMPLES = ROOT / "examples" / "pytorch"
GRIDLESS = [sys.executable, "-m", "gridless"]

pytestmark = [pytest.mark.slow]


def run_cli(*args: str, cwd: Path, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EXAMPLE_DATA": str(cwd / "data"), "COLUMNS": "200"}
    return subprocess.run(
        [*GRIDLESS, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def open_run(run_root: Path) -> Any:
    """The finished run's master app (as `gridless master RUN_DIR` opens it)."""
    (run_dir,) = list(run_root.iterdir())
    return run_dir, create_app(
        database_url=f"sqlite:///{run_dir / 'gridless.db'}", store_root=run_dir / "store"
    )


def code_lines(path: Path) -> list[str]:
    """The script after its module docstring."""
    text = path.read_text(encoding="utf-8")
    return text[text.index('"""', 3) + 3 :].splitlines()


def test_the_glue_diff_is_about_ten_lines_and_the_docs_show_it() -> None:
    diff = list(
        difflib.unified_diff(
            code_lines(EXAMPLES / "train_plain.py"), code_lines(EXAMPLES / "train.py"), n=0
        )
    )
    added = [line[1:] for line in diff if line.startswith("+") and not line.startswith("+++")]
    added = [line for line in added if line.strip()]
    assert len(added) <= 10, added
    docs = (ROOT / "docs" / "user-code.md").read_text(encoding="utf-8")
    for line in added:
        assert f"+{line}" in docs, line


@pytest.mark.torch
@pytest.mark.parametrize("script", ["train_plain.py", "train.py", "regression.py"])
def test_the_examples_run_as_plain_scripts(script: str, tmp_path: Path) -> None:
    env = {**os.environ, "EXAMPLE_DATA": str(tmp_path / "data")}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    last = 20 if script == "regression.py" else 8
    assert re.search(rf"epoch {last}\b", done.stdout + done.stderr)


@pytest.mark.ray
@pytest.mark.torch
def test_the_pytorch_example_runs_as_a_three_stage_study(tmp_path: Path) -> None:
    done = run_cli("run", str(EXAMPLES / "study.yaml"), "--run-dir", "runs", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "21/21" in done.stdout
    assert "pytorch-digits-cnn: top 10 of 21 trials by val_accuracy" in done.stdout
    run_dir, app = open_run(tmp_path / "runs")
    service = app.state.service
    stages = service.stages(1)
    assert [(st.trials, st.epochs, st.state) for st in stages] == [
        (12, 2, "done"),
        (6, 4, "done"),
        (3, 8, "done"),
    ]
    ranked, count = service.ranked_trials(1, limit=100, offset=0)
    assert count == 21
    assert ranked[0].best_score > 0.9
    ck = service.trial_checkpoints(ranked[0].id)[-1]
    assert re.fullmatch(r"val[01]\.\d{4}_ep\d{3}\.pt", ck.path.split("/")[-1])
    import torch

    state = torch.load(run_dir / "store" / ck.path, weights_only=True)["state"]
    assert {"model", "optimizer", "scheduler"} <= set(state)
    # trial.watch in train.py: every epoch carries the built-in models' statistics
    rows = service.trial_metrics(ranked[0].id)
    for row in rows:
        assert {"conv1.weight", "fc2.weight"} <= set(row.stats["update_ratio"])
        assert [layer["name"] for layer in row.stats["layers"]] == ["conv1", "conv2", "fc1"]
    assert rows[0].stats["learning_rate"] > rows[-1].stats["learning_rate"]  # cosine
    # the spec's predict: and evaluate: hooks: `gridless ensemble` on the reopened run
    port = free_port()
    env = {**os.environ, "EXAMPLE_DATA": str(tmp_path / "data")}
    master = subprocess.Popen(
        [*GRIDLESS, "master", str(run_dir), "--port", str(port)], cwd=ROOT, env=env
    )
    try:
        wait_for_master(f"http://127.0.0.1:{port}", 60)
        built = run_cli(
            "ensemble", "1", "-k", "3", "--url", f"http://127.0.0.1:{port}", cwd=tmp_path
        )
    finally:
        master.terminate()
        master.wait(timeout=30)
    assert built.returncode == 0, built.stderr[-3000:]
    table = {
        m[1]: (int(m[2]), float(m[3]), float(m[4]))
        for m in re.finditer(
            r"│ (\w+)\s+│ [^│]+│\s+(\d+) │\s+([\d.]+) │\s+([\d.]+) │", built.stdout
        )
    }
    assert table["top_k"][0] == 3
    assert table["top_k"][1] >= 0.9  # validation accuracy of the average
    assert 0.9 <= table["top_k"][2] <= 1.0
    assert "val accuracy" in built.stdout
    assert "test split: 197 examples, never used to choose" in built.stdout


REGRESSION = '''
import math
import numpy as np


def main(trial):
    """Least squares by gradient descent on y = 2 x + 3: a tiny lr leaves R^2 negative."""
    rng = np.random.default_rng(trial.seed)
    x = rng.normal(size=200)
    y = 2 * x + 3 + 0.1 * rng.normal(size=200)
    w = b = 0.0
    for epoch in trial.epochs():
        for _ in range(30):
            pred = w * x + b
            w -= trial.params["lr"] * 2 * np.mean((pred - y) * x)
            b -= trial.params["lr"] * 2 * np.mean(pred - y)
        mse = float(np.mean((w * x + b - y) ** 2))
        trial.report(epoch, val_rmse=math.sqrt(mse), val_r2=1 - mse / float(np.var(y)))
        trial.save({"w": w, "b": b})
'''


@pytest.mark.ray
def test_a_regression_study_ranks_and_names_by_r2(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "fit.py").write_text(textwrap.dedent(REGRESSION))
    (project / "study.yaml").write_text(
        textwrap.dedent(
            """\
            name: r2-study
            train: fit:main
            metric: {name: val_r2, mode: max}
            space:
              lr: {log_uniform: [1.0e-4, 0.4]}
            stages:
              - {trials: 8, epochs: 2}
              - {trials: 4, epochs: 3}
              - {trials: 2, epochs: 4}
            """
        )
    )
    done = run_cli("run", "study.yaml", "--run-dir", "runs", "--columns", "val_rmse", cwd=project)
    assert done.returncode == 0, done.stderr[-3000:]
    header = next(line for line in done.stdout.splitlines() if "┃ rank" in line)
    assert re.search(r"rank .* trial .* stage .* val_r2 .* val_rmse .* epoch .* state", header)
    assert "top 10 of 14 trials by val_r2" in done.stdout

    run_dir, app = open_run(project / "runs")
    ranked, _ = app.state.service.ranked_trials(1, limit=100, offset=0)
    scores = [t.best_score for t in ranked]
    assert scores == sorted(scores, reverse=True)
    assert min(scores) < 0 < max(scores)  # negative R^2 ranks below, not above
    table_rows = [line for line in done.stdout.splitlines() if re.match(r"^\W+1\W", line)]
    assert f"{scores[0]:.4f}" in table_rows[0]
    for trial in (ranked[0], ranked[-1]):
        ck = app.state.service.trial_checkpoints(trial.id)[-1]
        name = parse_name(ck.path.split("/")[-1])
        assert name.metric == "r2"
        assert name.score == round(ck.score, 4)
        assert (run_dir / "store" / ck.path).is_file()


COMMON_INIT = "SCALE = 3.0\n"
COMMON_DATA = """
import numpy as np

from common import SCALE


def points(seed):
    return SCALE * np.random.default_rng(seed).normal(size=50)
"""
PROJECT_TRAIN = """
from common.data import points


def main(trial):
    x = points(trial.seed)
    trial.report(1, val_loss=float(((x - trial.params["shift"]) ** 2).mean()))
"""


@pytest.mark.ray
def test_a_user_project_with_its_own_common_package_runs(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "common").mkdir(parents=True)
    (project / "common" / "__init__.py").write_text(COMMON_INIT)
    (project / "common" / "data.py").write_text(textwrap.dedent(COMMON_DATA))
    (project / "train.py").write_text(textwrap.dedent(PROJECT_TRAIN))
    (project / "study.yaml").write_text(
        "name: own-common\ntrain: train:main\nmetric: val_loss\n"
        "space: {shift: {uniform: [-1.0, 1.0]}}\n"
        "stages: [{trials: 4, epochs: 1}, {trials: 2, epochs: 1}]\n"
    )
    done = run_cli("run", "study.yaml", "--run-dir", "runs", cwd=project)
    assert done.returncode == 0, done.stderr[-3000:]
    _, app = open_run(project / "runs")
    ranked, count = app.state.service.ranked_trials(1, limit=10, offset=0)
    assert count == 6
    assert {t.state for t in ranked} == {"completed"}, [t.error for t in ranked]


SLOW_FUNCTION = """
import time
import numpy as np


def main(trial):
    w = np.zeros(4)
    restored = 0
    if (state := trial.restore()) is not None:
        w, restored = state["w"], int(state["epoch"])
    for epoch in trial.epochs():
        time.sleep(0.4)
        w = w + 1.0
        trial.report(epoch, val_loss=1.0 / epoch, restored_from=restored, w0=float(w[0]))
        trial.save({"w": w, "epoch": epoch})
"""


@pytest.fixture
def ray_master_with(tmp_path: Path, ray_session: object) -> Iterator[Any]:
    """A master whose Ray workers import from `tmp_path/user` (a user's project)."""
    user = tmp_path / "user"
    user.mkdir()
    where: dict[str, str] = {}

    def factory() -> RayLauncher:
        return RayLauncher(where["url"], str(tmp_path / "store"), python_path=[str(user)])

    app = create_app(
        database_url=f"sqlite:///{tmp_path / 'gridless.db'}",
        store_root=tmp_path / "store",
        heartbeat_interval_s=0.5,
        launcher_factory=factory,
    )
    server = BackgroundServer(app)
    where["url"] = server.url
    with server:
        yield app, user
        app.state.workers.shutdown()


@pytest.mark.ray
def test_a_lost_function_trial_resumes_from_restore_on_another_worker(
    ray_master_with: Any,
) -> None:
    app, user = ray_master_with
    (user / "slow_fn.py").write_text(textwrap.dedent(SLOW_FUNCTION))
    spec = parse_spec(
        {
            "name": "resume-fn",
            "train": "slow_fn:main",
            "metric": "val_loss",
            "space": {"x": {"uniform": [0.0, 1.0]}},
            "stages": [{"trials": 2, "epochs": 10}],
            "early_stopping": {"rule": "none"},
        }
    )
    study = app.state.service.create_study(spec)
    app.state.workers.launch(2)
    sessions = app.state.context.sessions

    def victim() -> TrialRow | None:
        with sessions() as s:
            return s.scalar(
                select(TrialRow).where(TrialRow.state == "running", TrialRow.last_epoch >= 3)
            )

    trial = wait_for(victim, 120, "a trial three epochs in")
    os.kill(app.state.workers.launcher.pid(trial.worker_id), signal.SIGKILL)
    wait_for(lambda: app.state.service.progress(study.id).state == "completed", 180, "the study")

    with sessions() as s:
        done = s.get(TrialRow, trial.id)
        rows = {
            m.epoch: m
            for m in s.scalars(select(EpochMetricRow).where(EpochMetricRow.trial_id == trial.id))
        }
    assert done.state == "completed"
    assert done.attempt >= 1
    assert done.worker_id != trial.worker_id
    assert sorted(rows) == list(range(1, 11))  # every epoch exactly once
    resumed = [m for m in rows.values() if m.attempt >= 1]
    first = min(m.epoch for m in resumed)
    assert first > 1, "the new attempt restored a checkpoint, not started over"
    # restored from the newest checkpoint recorded before the kill: that epoch or the one
    # before it (a kill between an epoch's report and its checkpoint re-trains that epoch)
    assert first - 2 <= rows[first].metrics["restored_from"] <= first - 1
    assert rows[first].metrics["restored_from"] >= 1
    # the weights went on from the restored state: w0 counts every epoch once
    assert [rows[e].metrics["w0"] for e in sorted(rows)] == [float(e) for e in range(1, 11)]


SAVES_AFTER_REPORT = """
def main(trial):
    # the older order of the docs: report the epoch, then save it
    for epoch in trial.epochs():
        trial.report(epoch, val_loss=1.0 / epoch, val_f1=0.3 * epoch)
        trial.save({"epoch": epoch, "lr": trial.params["lr"]})
"""


@pytest.mark.ray
def test_the_epoch_that_reaches_the_target_is_the_best_checkpoint(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "f1.py").write_text(textwrap.dedent(SAVES_AFTER_REPORT))
    (project / "study.yaml").write_text(
        textwrap.dedent(
            """\
            name: f1-target
            train: f1:main
            metric: {name: val_f1, mode: max}
            space:
              lr: {log_uniform: [1.0e-4, 0.1]}
            stages:
              - {trials: 2, epochs: 5}
            stop: {target: 0.85}
            """
        )
    )
    done = run_cli("run", "study.yaml", "--run-dir", "runs", "--workers", "1", cwd=project)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "target reached: val_f1 0.9 >= 0.85" in done.stdout
    found = re.search(r"best checkpoint \(trial (\d+), epoch (\d+)\): (\S+)", done.stdout)
    assert found is not None, done.stdout
    assert found.group(2) == "3"
    assert "has no checkpoint" not in done.stdout
    run_dir, _ = open_run(project / "runs")
    assert gridless.load_state(run_dir / "store" / found.group(3))["epoch"] == 3
