"""The checkpoint store under faults: a process SIGKILLed in the middle of a write leaves
no file under a final name; a full disk costs checkpoints, not trials, and leaves no
partial files."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from gridless.common.checkpoints import LocalStore
from gridless.common.db import CheckpointRow, EpochMetricRow, TrialRow, session_scope
from tests.conftest import Master, tiny_spec

pytestmark = [pytest.mark.slow]


def test_a_kill_during_a_checkpoint_write_leaves_no_file_under_a_final_name(
    tmp_path: Path,
) -> None:
    writer = textwrap.dedent(
        """
        import sys, time
        from gridless.common.checkpoints import LocalStore

        def slow(handle):
            handle.write(b"PK" + b"x" * 1_000_000)
            handle.flush()
            print("half written", flush=True)
            time.sleep(60)
            handle.write(b"never")

        LocalStore(sys.argv[1]).write_with("s", "000001", score=0.9, epoch=3, writer=slow)
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", writer, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "half written"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    process.stdout.close()
    folder = tmp_path / "s" / "000001"
    names = sorted(p.name for p in folder.iterdir())
    assert len(names) == 1
    assert names[0].startswith(".tmp-")  # the partial file only ever had a temporary name
    assert LocalStore(tmp_path).list_trial("s", "000001") == []
    assert not (folder / "val0.9000_ep003.npz").exists()


@contextlib.contextmanager
def tiny_filesystem(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted at `path` (the tests run as root in CI)."""
    path.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small filesystem needs root")
def test_a_full_disk_costs_checkpoints_not_trials(master: Master, tmp_path: Path) -> None:
    from gridless.worker.loop import run_worker

    # hidden=256: a checkpoint (weights + optimizer state) is over 150 KB, the disk 64 KiB.
    spec = tiny_spec(
        space={"learning_rate": {"log_uniform": [0.01, 1.0]}},
        fixed={"hidden": 256},
        stages=[{"trials": 2, "epochs": 2}, {"trials": 1, "epochs": 2}],
    )
    study = master.service.create_study(spec)
    with tiny_filesystem(tmp_path / "full", "64k") as store_root:
        threads = [
            threading.Thread(
                target=run_worker, args=(master.url, store_root, f"t{i}"), daemon=True
            )
            for i in (1, 2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=240)
        leftovers = [p for p in store_root.rglob("*") if p.is_file()]
    assert master.service.progress(study.id).state == "completed"
    with session_scope(master.service.sessions) as s:
        trials = list(s.scalars(select(TrialRow)))
        epochs = len(list(s.scalars(select(EpochMetricRow))))
        checkpoints = list(s.scalars(select(CheckpointRow)))
    assert {t.state for t in trials} == {"completed"}
    assert epochs == 2 * 2 + 1 * 2  # every epoch reported
    assert checkpoints == []
    # no partial or temporary file left on the full disk (a trial's small log may fit)
    assert [p for p in leftovers if p.name != "trial.log"] == []
    for t in trials:
        codes = {w["code"] for w in t.warnings}
        assert "checkpoint_write_failed" in codes
        message = next(w["message"] for w in t.warnings if w["code"] == "checkpoint_write_failed")
        assert "No space left on device" in message
