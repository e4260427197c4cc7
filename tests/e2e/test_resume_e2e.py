"""`gridless run` interrupted with SIGINT, then continued with the command it prints, from
another directory: the study completes, its trials still run in the directory the run
started in, and no trial trains an epoch twice beyond the one its last checkpoint missed."""

from __future__ import annotations

import collections
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.ray]

FUNCTION = """
import time
from pathlib import Path


def main(trial):
    done = 0
    if (state := trial.restore()) is not None:
        done = int(state["epoch"])
    for epoch in trial.epochs():
        time.sleep(0.3)
        trial.report(epoch, val_loss=trial.params["lr"] / epoch, done_before=done)
        with open(Path(__file__).with_name("epochs.txt"), "a") as log:
            log.write(f"{trial.number} {epoch}\\n")
        with open("relative.txt", "a") as log:  # relative to where the run started
            log.write(f"{trial.number} {epoch}\\n")
        trial.save({"epoch": epoch})
        done = epoch
"""


def test_an_interrupted_run_resumes_from_another_directory(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "slow.py").write_text(textwrap.dedent(FUNCTION))
    (project / "study.yaml").write_text(
        "name: resumable\ntrain: slow:main\nmetric: val_loss\n"
        "space: {lr: {log_uniform: [1.0e-3, 1.0]}}\n"
        "stages: [{trials: 4, epochs: 6}, {trials: 2, epochs: 6}]\n"
        "early_stopping: {rule: none}\n"
    )
    env = {**os.environ, "COLUMNS": "200"}
    first = subprocess.Popen(
        [sys.executable, "-m", "gridless", "run", "study.yaml", "--run-dir", "runs"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    epochs = project / "epochs.txt"
    deadline = time.monotonic() + 180
    while not epochs.exists() or len(epochs.read_text().splitlines()) < 8:
        assert time.monotonic() < deadline, "the run trained nothing"
        assert first.poll() is None, first.communicate()
        time.sleep(0.2)
    first.send_signal(signal.SIGINT)
    out, errors = first.communicate(timeout=120)
    assert first.returncode == 130, out + errors
    match = re.search(r"Continue it with:\s+gridless resume (\S+)", errors)
    assert match, errors
    run_dir = Path(match.group(1))
    assert run_dir.is_absolute()

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    second = subprocess.run(
        [sys.executable, "-m", "gridless", "resume", str(run_dir)],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "goes on:" in second.stdout
    assert "6/6" in second.stdout

    with sqlite3.connect(run_dir / "gridless.db") as db:
        states = [s for (s,) in db.execute("SELECT state FROM trials")]
        rows = db.execute("SELECT trial_id, epoch FROM epoch_metrics").fetchall()
    assert states == ["completed"] * 6
    per_trial = collections.Counter(trial for trial, _ in rows)
    assert set(per_trial.values()) == {6}  # every epoch stored exactly once
    # the resumed trials ran in the directory the run started in, not in `elsewhere`
    assert not (elsewhere / "relative.txt").exists()
    assert (project / "relative.txt").read_text() == epochs.read_text()
    trained = collections.Counter(epochs.read_text().split("\n")[:-1])
    repeats = [key for key, n in trained.items() if n > 1]
    assert all(n <= 2 for n in trained.values()), trained
    # only an epoch whose checkpoint the interruption cut off is trained again
    assert len(repeats) <= 2, repeats
