"""The `gridless` command as a user runs it: a real subprocess, real Ray, a real server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import TINY_SPEC
from tests.net import free_port, wait_for_master

GRIDLESS = [sys.executable, "-m", "gridless.master.cli"]


def cli(*args: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [*GRIDLESS, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def write_spec(tmp_path: Path, **changes: object) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({**TINY_SPEC, **changes}))
    return path


@pytest.mark.parametrize(
    ("changes", "line"),
    [
        (
            {"learnin_rate": 1},
            "error: learnin_rate: unknown key; check its spelling against the documented spec",
        ),
        (
            {"space": {"learning_rate": {"log_uniform": [0, 1]}}},
            "error: space.learning_rate: log_uniform: `low > 0` must hold for a log scale, but got low=0, high=1",
        ),
        (
            {"space": {"learning_rate": {"uniform": [1, 0]}}},
            "error: space.learning_rate: uniform: `low <= high` must hold, but got low=1, high=0",
        ),
        (
            {"space": {"learning_rate": {"uniform": [0, float("inf")]}}},
            "error: space.learning_rate: uniform: `high` must be finite, but got high=inf",
        ),
        (
            {"space": {"update": {"choice": []}}},
            "error: space.update: choice: the option list must not be empty, but got []",
        ),
        (
            {"space": {"lr": {"uniform": [0, 1]}}},
            "model 'numpy.mlp' has no hyperparameter 'lr'; valid: batch_size, batchnorm, beta1, beta2,",
        ),
    ],
)
def test_bad_spec_exits_nonzero_with_one_line_and_writes_nothing(
    tmp_path: Path, changes: dict[str, object], line: str
) -> None:
    spec = write_spec(tmp_path, **changes)
    result = cli("run", str(spec), "--run-dir", str(tmp_path / "runs"), cwd=tmp_path, timeout=60)
    assert result.returncode != 0
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert line in result.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.ray
@pytest.mark.slow
def test_run_then_serve_gives_the_same_ranking(tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    result = cli(
        "run", str(spec), "--workers", "2", "--run-dir", str(tmp_path / "runs"), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "tiny: top 6 of 6 trials by val_accuracy" in result.stdout
    table_trials = [
        int(m[1]) for m in re.finditer(r"^│\s+\d+\s+│\s+(\d+)\s+│", result.stdout, re.M)
    ]
    assert len(table_trials) == 6
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert (run_dir / "gridless.db").is_file()
    assert (run_dir / "store" / "tiny").is_dir()

    port = free_port()
    server = subprocess.Popen(
        [*GRIDLESS, "master", str(run_dir), "--port", str(port)], cwd=tmp_path
    )
    try:
        wait_for_master(f"http://127.0.0.1:{port}", 30)
        page = httpx.get(f"http://127.0.0.1:{port}/api/v1/studies/1/trials", timeout=5)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert [t["number"] for t in page.json()["data"]] == table_trials


def test_master_refuses_to_listen_beyond_loopback_without_a_token(tmp_path: Path) -> None:
    env_free = cli(
        "master", str(tmp_path / "run"), "--new", "--host", "0.0.0.0", cwd=tmp_path, timeout=60
    )
    assert env_free.returncode == 2
    assert (
        "refusing to listen on 0.0.0.0 without a token: set GRIDLESS_TOKEN or --token"
        in env_free.stderr
    )
    assert not (tmp_path / "run").exists()


def test_check_passes_on_a_shipped_example(tmp_path: Path) -> None:
    examples = Path(__file__).parents[2] / "examples"
    result = cli("check", str(examples / "digits.yaml"), cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "gradient check (pass: relative error <= 1e-05)" in result.stdout
    assert "pass  overfits 20 examples" in result.stdout
    assert result.stdout.rstrip().endswith("all checks pass")


BROKEN_MODEL = """
from gridless.worker.data import Dataset
from gridless.worker.trainer import EpochMetrics


class NeverLearns:
    checkpoint_suffix = "npz"

    def __init__(self, data, params, seed):
        self.data = data

    def train_epoch(self):
        return EpochMetrics(2.3, 0.1, 2.3, 0.1, 0.0, False, {})

    def write_checkpoint(self, handle, meta):
        handle.write(b"")

    def load_checkpoint(self, path):
        return {}


def build(data, params, seed):
    return NeverLearns(data, params, seed)
"""


def test_run_refuses_a_model_that_fails_its_checks_unless_forced(tmp_path: Path) -> None:
    (tmp_path / "broken_model.py").write_text(BROKEN_MODEL)
    spec = write_spec(
        tmp_path,
        model="broken_model:build",
        space={"reg": {"log_uniform": [1e-4, 1e-3]}},
        stages=[{"trials": 2, "epochs": 1}],
    )
    result = cli("check", str(spec), cwd=tmp_path, timeout=120)
    assert result.returncode == 1
    assert (
        "FAIL  overfits 20 examples: after 300 epochs: training accuracy 10.00%" in result.stdout
    )
    refused = cli("run", str(spec), "--run-dir", str(tmp_path / "runs"), cwd=tmp_path, timeout=120)
    assert refused.returncode == 1
    assert "error: preflight checks failed; fix the model or pass --force" in refused.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.ray
@pytest.mark.slow
def test_force_runs_despite_failed_checks(tmp_path: Path) -> None:
    (tmp_path / "broken_model.py").write_text(BROKEN_MODEL)
    spec = write_spec(
        tmp_path,
        model="broken_model:build",
        space={"reg": {"log_uniform": [1e-4, 1e-3]}},
        stages=[{"trials": 2, "epochs": 1}],
    )
    result = cli(
        "run",
        str(spec),
        "--force",
        "--workers",
        "1",
        "--run-dir",
        str(tmp_path / "runs"),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "--force: starting despite failed checks" in result.stderr
    assert "tiny: top 2 of 2 trials by val_accuracy" in result.stdout


@pytest.mark.ray
@pytest.mark.slow
def test_master_status_and_workers_commands(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [
            *GRIDLESS,
            "master",
            str(tmp_path / "run"),
            "--new",
            "--port",
            str(port),
            "--heartbeat",
            "1",
        ],
        cwd=tmp_path,
    )
    try:
        wait_for_master(url)
        spec = {**TINY_SPEC, "stages": [{"trials": 2, "epochs": 1}, {"trials": 2, "epochs": 1}]}
        assert httpx.post(f"{url}/api/v1/studies", json=spec).status_code == 201
        assert "0 workers (0 running)" in cli("workers", "ls", "--url", url, cwd=tmp_path).stdout
        missing = cli("workers", "kill", "w9", "--url", url, cwd=tmp_path)
        assert missing.returncode == 1
        assert "DELETE /workers/w9: 404 no running worker 'w9'" in missing.stderr
        added = cli("workers", "add", "1", "--url", url, cwd=tmp_path, timeout=120)
        assert added.returncode == 0, added.stderr
        assert "started w1" in added.stdout
        watched = cli("status", "1", "--url", url, "--watch", cwd=tmp_path, timeout=180)
        assert watched.returncode == 0, watched.stderr
        assert "tiny (completed): 4/4 trials finished" in watched.stdout
        assert "stage 1 -> 2: learning_rate" in watched.stdout
        listed = cli("workers", "ls", "--url", url, cwd=tmp_path).stdout
        assert "w1" in listed
        killed = cli("workers", "kill", "--all", "--url", url, cwd=tmp_path)
        assert killed.returncode == 0
        assert cli("workers", "kill", "--url", url, cwd=tmp_path).returncode == 2
    finally:
        server.terminate()
        server.wait(timeout=60)


@pytest.mark.ray
@pytest.mark.slow
def test_submit_sends_a_study_launches_workers_and_ends_with_the_ranked_table(
    tmp_path: Path,
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    spec = write_spec(tmp_path, stages=[{"trials": 3, "epochs": 1}, {"trials": 2, "epochs": 1}])
    unreachable = cli("submit", str(spec), "--url", url, cwd=tmp_path)
    assert unreachable.returncode == 1
    assert f"cannot reach the master at {url}/api/v1" in unreachable.stderr
    server = subprocess.Popen(
        [
            *GRIDLESS,
            "master",
            str(tmp_path / "run"),
            "--new",
            "--port",
            str(port),
            "--heartbeat",
            "1",
        ],
        cwd=tmp_path,
    )
    try:
        wait_for_master(url)
        bad = cli("submit", str(write_spec(tmp_path, learnin_rate=1)), "--url", url, cwd=tmp_path)
        assert bad.returncode == 2
        assert "learnin_rate: unknown key" in bad.stderr
        assert httpx.get(f"{url}/api/v1/studies").json()["count"] == 0  # nothing was sent
        spec = write_spec(
            tmp_path, stages=[{"trials": 3, "epochs": 1}, {"trials": 2, "epochs": 1}]
        )
        done = cli("submit", str(spec), "--workers", "1", "--url", url, cwd=tmp_path, timeout=180)
        assert done.returncode == 0, done.stderr
        assert f"study 1 (tiny) on {url}: dashboard at {url}/" in done.stdout
        assert "started workers w1" in done.stdout
        assert "5/5" in done.stdout  # the progress bar's last state
        assert "tiny: top 5 of 5 trials by val_accuracy" in done.stdout
        ranked = httpx.get(f"{url}/api/v1/studies/1/trials").json()["data"]
        first_row = next(line for line in done.stdout.splitlines() if re.match(r"^│\s+1 │", line))
        assert f"{ranked[0]['best_score']:.4f}" in first_row
    finally:
        server.terminate()
        server.wait(timeout=60)
