"""A real 3-node Ray cluster on this machine, started by `deploy/launch.sh --local 2`
(a head and two `ray start --address` nodes, each its own raylet and processes), with
the master on the head and checkpoints in an S3-compatible store. One worker node is
SIGKILLed mid-study: the study completes and no acknowledged report is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import s3fs
import yaml
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from gridless.common.db import CheckpointRow, EpochMetricRow, TrialRow
from tests.conftest import tiny_spec
from tests.net import free_port, wait_for
from tests.proxy import RecordingProxy

pytestmark = [pytest.mark.slow, pytest.mark.ray]

LAUNCH = Path(__file__).resolve().parents[2] / "deploy" / "launch.sh"
SLOW = {"batch_size": 8, "hidden": 256, "layers": 2}


def kill_node(group: int) -> list[int]:
    """SIGKILL a node as if its machine died: its process group (`ray start --block`, the
    raylet) and every descendant (Ray's worker processes run in their own groups)."""
    table = subprocess.run(
        ["ps", "-e", "-o", "pid=,ppid=,pgid="], capture_output=True, text=True, check=True
    ).stdout.split()
    rows = [tuple(map(int, table[i : i + 3])) for i in range(0, len(table), 3)]
    doomed = {pid for pid, _, pgid in rows if pgid == group}
    grew = True
    while grew:
        more = {pid for pid, ppid, _ in rows if ppid in doomed} - doomed
        doomed |= more
        grew = bool(more)
    for pid in doomed:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return sorted(doomed)


class Cluster:
    def __init__(self, state: Path, env: dict[str, str]) -> None:
        self.state = state
        self.env = env

    def launch(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(LAUNCH), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def alive_groups(self) -> list[int]:
        groups = []
        for pidfile in self.state.glob("*.pid"):
            group = int(pidfile.read_text())
            try:
                os.killpg(group, 0)
                groups.append(group)
            except ProcessLookupError:
                pass
        return groups


@pytest.fixture
def cluster(tmp_path: Path, s3_server: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["GRIDLESS_CLUSTER_DIR"] = str(tmp_path / "cluster")
    env["GRIDLESS_STORE_OPTIONS"] = s3_server.options_json
    env["GRIDLESS_HEARTBEAT_INTERVAL_S"] = "1"
    c = Cluster(tmp_path / "cluster", env)
    try:
        yield c
    finally:
        stopped = c.launch("stop", timeout=120)
        assert stopped.returncode == 0, stopped.stderr
        assert c.alive_groups() == [], "launch.sh stop left processes behind"


def test_a_study_survives_the_loss_of_a_worker_node(
    cluster: Cluster, s3_server: Any, tmp_path: Path
) -> None:
    ray_port, master_port = free_port(), free_port()
    master_url = f"http://127.0.0.1:{master_port}"
    bucket = s3_server.new_bucket()
    with RecordingProxy(master_url) as proxy:
        up = cluster.launch(
            "--local", "2",
            "--ray-port", str(ray_port),
            "--master-port", str(master_port),
            "--advertise-url", proxy.url,
            "--store", f"s3://{bucket}/runs",
        )  # fmt: skip
        assert up.returncode == 0, up.stdout + up.stderr
        assert "3 Ray nodes alive" in up.stdout
        token = (cluster.state / "master-token").read_text().strip()
        assert f"token      {token}" in up.stdout
        api = httpx.Client(
            base_url=f"{master_url}/api/v1",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        spec = tiny_spec(
            fixed=SLOW, stages=[{"trials": 4, "epochs": 5}, {"trials": 2, "epochs": 5}]
        )
        spec_file = tmp_path / "spec.yaml"
        spec_file.write_text(yaml.safe_dump(spec.model_dump(mode="json")), encoding="utf-8")
        # What the README says to do next: source cluster.env, then gridless submit.
        env = dict(cluster.env)
        for line in (cluster.state / "cluster.env").read_text().splitlines():
            if line.startswith("export "):
                key, _, value = line.removeprefix("export ").partition("=")
                env[key] = value
        assert env["GRIDLESS_URL"] == master_url
        submitted = subprocess.run(
            ["gridless", "submit", str(spec_file), "--workers", "2", "--no-watch"],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert submitted.returncode == 0, submitted.stdout + submitted.stderr
        assert "started workers w1, w2" in submitted.stdout

        # Both workers (one on each worker node) are mid-trial with reports acknowledged.
        def both_busy() -> bool:
            rows = api.get("/workers").json()["data"]
            return sum(w["state"] == "busy" for w in rows) == 2 and len(proxy.acked()) >= 3

        wait_for(both_busy, 180, "two busy workers")
        node = int((cluster.state / "node-1.pid").read_text())
        killed = kill_node(node)
        assert len(killed) >= 3, killed  # ray start, its raylet, the worker actor at least
        killed_at = len(proxy.acked())

        def finished() -> bool:
            return bool(api.get("/studies/1").json()["state"] == "completed")

        killed_t = time.monotonic()
        wait_for(finished, 400, "the study to complete after the node loss")
        print(f"node loss: study completed {time.monotonic() - killed_t:.1f} s after the kill")
        api.close()
        acks = proxy.acked()

    print(f"node loss: {len(acks)} acknowledged reports, {killed_at} before the kill")
    assert len(acks) > killed_at, "reports went on after the node died"
    engine = create_engine(f"sqlite:///{cluster.state / 'run' / 'gridless.db'}")
    with Session(engine) as s:
        stored = {(m.trial_id, m.epoch): m.val_accuracy for m in s.scalars(select(EpochMetricRow))}
        trials = list(s.scalars(select(TrialRow)))
        live = [
            c.path
            for c in s.scalars(select(CheckpointRow).where(CheckpointRow.deleted_at.is_(None)))
        ]
    engine.dispose()
    acked: dict[tuple[int, int], set[float | None]] = {}
    for a in acks:
        acked.setdefault((a.trial_id, a.epoch), set()).add(a.val_accuracy)
    for key, values in acked.items():
        assert key in stored, f"acknowledged report {key} was lost"
        assert stored[key] in values, (key, stored[key], values)
    assert {t.state for t in trials} == {"completed"}
    assert len(trials) == 6
    assert all(t.last_epoch == 5 for t in trials)
    # The trial running on the dead node was resumed as a new attempt elsewhere.
    assert max(t.attempt for t in trials) >= 1, [
        (t.number, t.attempt, t.worker_id) for t in trials
    ]
    # Its checkpoints, and everyone's, are in the object store the nodes share.
    fs = s3fs.S3FileSystem(**s3_server.options, skip_instance_cache=True)
    in_bucket = {p.removeprefix(f"{bucket}/runs/") for p in fs.find(f"{bucket}/runs")}
    assert set(live) <= in_bucket


@pytest.fixture
def gpu_cluster(tmp_path: Path) -> Iterator[Cluster]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["GRIDLESS_CLUSTER_DIR"] = str(tmp_path / "cluster")
    c = Cluster(tmp_path / "cluster", env)
    try:
        yield c
    finally:
        stopped = c.launch("stop", timeout=120)
        assert stopped.returncode == 0, stopped.stderr
        assert c.alive_groups() == [], "launch.sh stop left processes behind"


@pytest.mark.torch
def test_local_nodes_offer_the_gpus_asked_for(gpu_cluster: Cluster, tmp_path: Path) -> None:
    """`--node-gpus 1` gives the worker node one logical GPU (this machine has none): a
    study at gpu 0.5 runs two workers on it; one asking for 2 GPUs is refused at once."""
    up = gpu_cluster.launch(
        "--local", "1", "--node-gpus", "1",
        "--ray-port", str(free_port()), "--master-port", str(free_port()),
    )  # fmt: skip
    assert up.returncode == 0, up.stdout + up.stderr
    env = dict(gpu_cluster.env)
    for line in (gpu_cluster.state / "cluster.env").read_text().splitlines():
        if line.startswith("export "):
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = value

    def submit(gpu: float) -> subprocess.CompletedProcess[str]:
        spec = tiny_spec(
            name=f"gpu-{gpu:g}".replace(".", "-"),
            model="torch.mlp",
            resources={"cpu": 0.5, "gpu": gpu},
            stages=[{"trials": 4, "epochs": 1}],
        )
        spec_file = tmp_path / f"gpu-{gpu:g}.yaml"
        spec_file.write_text(yaml.safe_dump(spec.model_dump(mode="json")), encoding="utf-8")
        return subprocess.run(
            ["gridless", "submit", str(spec_file), "--workers", "2"],
            env={**env, "COLUMNS": "200"}, capture_output=True, text=True, timeout=180,
            check=False,
        )  # fmt: skip

    shared = submit(0.5)
    assert shared.returncode == 0, shared.stdout + shared.stderr
    assert "started workers w1, w2" in shared.stdout
    assert "4/4" in shared.stdout
    too_big = submit(2)
    assert too_big.returncode != 0, too_big.stdout
    assert "each trial asks for cpu=0.5, gpu=2, and no node of the Ray cluster has that" in (
        too_big.stderr
    )
    assert "GPU 1" in too_big.stderr
    assert "was stopped" in too_big.stderr
    # the refused study does not hold the queue: the next one runs
    after = submit(0.25)
    assert after.returncode == 0, after.stdout + after.stderr
    assert "4/4" in after.stdout
