"""GPUs per trial, on a CPU-only machine: a local Ray that declares logical
GPUs schedules trials onto them as Ray would onto real ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.ray]

FUNCTION = """
import json
import os
import time
from pathlib import Path

import ray


def main(trial):
    start = time.time()
    time.sleep(2.0)
    record = {
        "number": trial.number,
        "start": start,
        "end": time.time(),
        "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
        "visible": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "device": trial.device,
    }
    folder = Path(__file__).with_name("seen")
    folder.mkdir(exist_ok=True)
    (folder / f"{trial.number}.json").write_text(json.dumps(record))
    trial.report(1, val_loss=trial.params["x"])
"""


def run(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gridless", "run", "study.yaml", "--run-dir", "runs", *args],
        cwd=project,
        env={**os.environ, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def project_with(tmp_path: Path, gpu: float, trials: int = 8) -> Path:
    (tmp_path / "gpu_fn.py").write_text(textwrap.dedent(FUNCTION))
    (tmp_path / "study.yaml").write_text(
        "name: gpus\ntrain: gpu_fn:main\nmetric: val_loss\n"
        f"resources: {{gpu: {gpu}}}\n"
        "space: {x: {uniform: [0.0, 1.0]}}\n"
        f"stages: [{{trials: {trials}, epochs: 1}}]\n"
    )
    return tmp_path


def most_at_once(records: list[dict]) -> int:  # type: ignore[type-arg]
    events = sorted([(r["start"], 1) for r in records] + [(r["end"], -1) for r in records])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


@pytest.mark.parametrize(("gpu", "together"), [(0.25, 4), (0.5, 2)])
def test_fractional_gpus_set_how_many_trials_share_one(
    tmp_path: Path, gpu: float, together: int
) -> None:
    project = project_with(tmp_path, gpu)
    done = run(project, "--ray-cpus", "8", "--ray-gpus", "1")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"workers: {together} (cpu=1, gpu={gpu:g} each)" in done.stdout
    records = [json.loads(p.read_text()) for p in (project / "seen").iterdir()]
    assert len(records) == 8
    # never more at once than the GPU's shares allow (fewer when load staggers the
    # actors' start-up, so the exact peak is not asserted)
    assert 1 <= most_at_once(records) <= together
    import torch

    # a logical GPU on a CPU machine: trials hold it, and train on what torch can use
    usable = "cuda" if torch.cuda.is_available() else "cpu"
    for record in records:
        assert record["gpu_ids"] == ["0"]  # Ray gave each actor its share of GPU 0
        assert record["visible"] == "0"
        assert record["device"] == usable
    if usable == "cpu":
        (run_dir,) = (project / "runs").iterdir()
        log = next((run_dir / "store" / "gpus").glob("*/trial.log")).read_text()
        assert "Ray gave this worker GPU 0, but torch" in log
        assert "sees no CUDA device (a logical GPU, or a CPU build of torch)" in log


def test_a_cpu_study_sees_no_gpu(tmp_path: Path) -> None:
    project = project_with(tmp_path, 0, trials=2)
    done = run(project, "--workers", "2", "--ray-gpus", "1")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for path in (project / "seen").iterdir():
        record = json.loads(path.read_text())
        assert (record["gpu_ids"], record["device"]) == ([], "cpu")


def test_a_gpu_study_on_a_cluster_without_gpus_fails_fast_and_says_why(tmp_path: Path) -> None:
    project = project_with(tmp_path, 0.5, trials=2)
    # a study that waited for a GPU would never end: `run` times out and the test fails
    done = run(project, "--ray-gpus", "0")
    assert done.returncode == 2, done.stdout[-3000:]
    assert "each trial asks for cpu=1, gpu=0.5, and no node of the Ray cluster has that" in (
        done.stderr
    )
    assert "GPU 0" in done.stderr
