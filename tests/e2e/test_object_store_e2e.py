"""A study whose checkpoints go to an S3-compatible object store (moto's server): real
Ray workers upload, the master's retention deletes, the API serves downloads."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import httpx
import pytest
import s3fs
from sqlalchemy import select

from gridless.common.checkpoints import parse_name
from gridless.common.db import CheckpointRow, session_scope
from tests.conftest import Master, run_with_ray, tiny_spec

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture
def s3_master(tmp_path: Path, s3_url: str) -> Any:
    m = Master(tmp_path / "run", store_root=s3_url)
    m.server.start()
    try:
        yield m
    finally:
        m.server.stop()


def test_a_study_with_its_checkpoints_in_s3(
    s3_master: Master, s3_server: Any, ray_session: object
) -> None:
    spec = tiny_spec(stages=[{"trials": 3, "epochs": 4}])  # 4 epochs: retention deletes some
    study_id = run_with_ray(s3_master, spec)
    fs = s3fs.S3FileSystem(**s3_server.options, skip_instance_cache=True)
    root = str(s3_master.store_root).removeprefix("s3://")
    in_bucket = {p.removeprefix(root + "/") for p in fs.find(root)}

    with session_scope(s3_master.service.sessions) as s:
        rows = list(s.scalars(select(CheckpointRow)))
    live = [c for c in rows if c.deleted_at is None]
    deleted = [c for c in rows if c.deleted_at is not None]
    assert len(rows) == 12, "4 epochs x 3 trials"
    assert deleted, "retention retired the checkpoints neither best nor latest"
    # Exactly the live checkpoints are in the bucket, each with its recorded size and hash.
    logs = {p for p in in_bucket if p.endswith("/trial.log")}
    assert in_bucket - logs == {c.path for c in live}
    assert len(logs) == 3, "each trial's log is in the bucket beside its checkpoints"
    for c in live:
        data = fs.cat_file(f"{root}/{c.path}")
        assert (len(data), hashlib.sha256(data).hexdigest()) == (c.size, c.sha256)
        assert parse_name(c.path.rsplit("/", 1)[-1]).score == round(c.score, 4)

    # The API downloads the best checkpoint from the bucket, byte for byte.
    with httpx.Client(base_url=f"{s3_master.url}/api/v1") as api:
        best = api.get(f"/studies/{study_id}/checkpoints").json()["data"][0]
        download = api.get("/checkpoints/file", params={"path": best["path"]})
        assert download.status_code == 200
        assert hashlib.sha256(download.content).hexdigest() == best["sha256"]
        meta = api.get("/checkpoints/meta", params={"path": best["path"]})
        assert meta.status_code == 200
        # A checkpoint that vanished from the bucket is a clear 404, not a 500.
        fs.rm_file(f"{root}/{best['path']}")
        gone = api.get("/checkpoints/file", params={"path": best["path"]})
        assert gone.status_code == 404
        assert "missing from the store" in gone.json()["detail"]
