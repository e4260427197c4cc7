"""gridless from Python, end to end on a real local Ray and a real master: the notebook
example run exactly as its docstring and docs/python-api.md show it, and `gridless.run`
of a dict spec that returns at once and is waited for."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import gridless
from gridless.common.checkpoint_files import read_npz
from tests.conftest import TINY_SPEC

ROOT = Path(__file__).parents[2]
NOTEBOOK = ROOT / "examples" / "pytorch" / "notebook.py"

pytestmark = [pytest.mark.slow, pytest.mark.ray]


@pytest.mark.torch
def test_the_notebook_example_launches_waits_and_loads_the_best_model(tmp_path: Path) -> None:
    shown = "python examples/pytorch/notebook.py"
    assert shown in NOTEBOOK.read_text(encoding="utf-8")
    assert shown in (ROOT / "docs" / "python-api.md").read_text(encoding="utf-8")
    env = {**os.environ, "EXAMPLE_DATA": str(tmp_path / "data")}
    done = subprocess.run(  # as shown, from another folder: the run goes under it
        [sys.executable, str(NOTEBOOK)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=500,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    out = done.stdout
    assert "study notebook-digits-cnn: completed" in out
    assert "6 trials, 6 completed" in out
    best = re.search(r"best val_accuracy (\d\.\d{4}) \(trial (\d+), epoch (\d+)\)", out)
    assert best is not None, out
    assert re.search(r"best params: \{'lr': [\d.e-]+, 'weight_decay'", out)
    assert f"the loaded model scores val_accuracy {best[1]} again" in out
    (run_dir,) = list((tmp_path / "gridless-runs").iterdir())
    record = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    assert (run_dir / "gridless.db").is_file()
    assert str(ROOT / "examples" / "pytorch") in record["import_paths"]  # where train was
    ckpt = re.search(r"best checkpoint: (\S+)", out)
    assert ckpt is not None
    assert (run_dir / "store" / ckpt[1]).is_file()


def test_run_of_a_dict_returns_at_once_and_wait_ends_with_the_study(
    ray_session: Any, tmp_path: Path
) -> None:
    spec = {**TINY_SPEC, "name": "from-python"}
    study = gridless.run(spec, workers=2, run_dir=tmp_path / "runs", wait=False)
    try:
        assert study.run_dir is not None
        assert study.run_dir.parent == (tmp_path / "runs").resolve()
        assert study.wait(timeout=300) is study
        assert study.state == "completed"
        trials = study.trials()
        assert [t.number for t in trials] == [0, 1, 2, 3, 4, 5]
        assert all(t.state == "completed" and t.score is not None for t in trials)
        best = study.best
        assert best is not None
        assert best.score == max(t.score for t in trials if t.score is not None)
        assert best.checkpoint is not None
        arrays = gridless.load_best(study)  # a built-in model: its checkpoint's arrays
        on_disk, _ = read_npz(study.run_dir / "store" / best.checkpoint)
        assert set(arrays) == set(on_disk)
        assert all((arrays[k] == on_disk[k]).all() for k in on_disk)
        with gridless.connect(study.url) as client:
            again = client.study("from-python")
            assert again.best == best
            assert again.state == "completed"
    finally:
        study.close()
    assert ray_session.is_initialized()  # a Ray this process started is left running
    saved = (study.run_dir / "spec.yaml").read_text(encoding="utf-8")
    assert "from-python" in saved
