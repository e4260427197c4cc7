"""`gridless run` on a user's function that fails, through Ray: the exception
message in the run's output; a function that always fails pauses its study, and the run
says why and exits 1."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.ray]

FUNCTION = """
def main(trial):
    if trial.params["lr"] > trial.params["limit"]:
        raise RuntimeError(f"my data loader broke at lr={trial.params['lr']:.3g}")
    trial.report(1, val_loss=trial.params["lr"])
"""


def run(project: Path, limit: float) -> subprocess.CompletedProcess[str]:
    (project / "study.yaml").write_text(
        "name: failing\ntrain: fn:main\nmetric: val_loss\n"
        f"fixed: {{limit: {limit}}}\n"
        "space: {lr: {log_uniform: [1.0e-4, 1.0]}}\n"
        "stages: [{trials: 10, epochs: 1}, {trials: 4, epochs: 1}]\n"
    )
    return subprocess.run(
        [sys.executable, "-m", "gridless", "run", "study.yaml", "--run-dir", "runs"],
        cwd=project,
        env={**os.environ, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "fn.py").write_text(textwrap.dedent(FUNCTION))
    return tmp_path


def test_the_run_shows_why_trials_failed(project: Path) -> None:
    done = run(project, limit=0.01)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "failed trials (" in done.stdout
    assert "RuntimeError: my data loader broke at lr=" in done.stdout


def test_a_function_that_always_fails_pauses_the_study_and_the_run_says_why(
    project: Path,
) -> None:
    done = run(project, limit=-1.0)
    assert done.returncode == 1, done.stdout[-3000:]
    assert "study paused" in done.stdout
    assert "the first 5 trials all failed; the last said: RuntimeError: my data" in done.stdout
    assert "14/14" not in done.stdout  # the budget was not burnt
