"""Choosing what a resumed trial loads: the newest checkpoint whose size and SHA-256
match the master's record; missing, truncated and corrupt ones are skipped."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gridless.common.checkpoints import LocalStore
from gridless.common.messages import Assignment, ResumePoint
from gridless.worker.loop import pick_resume_point


def _job(points: list[ResumePoint]) -> Assignment:
    return Assignment(
        trial_id=1, study="s", trial_number=1, attempt=1, seed=0, model="numpy.mlp",
        dataset="digits", metric="val_accuracy", epochs=5, space={}, fixed={},
        resume_from=points[0].path if points else None,
        resume_epoch=points[0].epoch if points else 0,
        resume_candidates=points,
    )  # fmt: skip


def _stored(store: LocalStore, epoch: int) -> ResumePoint:
    written = store.write(
        "s",
        "000001",
        score=0.5 + epoch / 100,
        epoch=epoch,
        arrays={"w": np.ones(64) * epoch},
        meta={},
    )
    return ResumePoint(path=written.relpath, epoch=epoch, size=written.size, sha256=written.sha256)


def test_the_newest_intact_checkpoint_is_chosen(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    points = [_stored(store, e) for e in (4, 3, 2, 1)]
    truncated = tmp_path / points[0].path
    truncated.write_bytes(truncated.read_bytes()[:100])
    flipped = tmp_path / points[1].path
    data = bytearray(flipped.read_bytes())
    data[-10] ^= 0xFF  # same size, different bytes
    flipped.write_bytes(bytes(data))
    (tmp_path / points[2].path).unlink()
    job = _job(points)
    local, skipped = pick_resume_point(store, job)
    assert local == (tmp_path / points[3].path).resolve()
    assert (job.resume_from, job.resume_epoch) == (points[3].path, 1)
    assert [s.split(" ")[0] for s in skipped] == [p.path for p in points[:3]]
    assert "does not match" in skipped[0]
    assert "does not match" in skipped[1]
    assert "no checkpoint" in skipped[2]


def test_with_nothing_usable_the_trial_starts_over(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    point = _stored(store, 3)
    (tmp_path / point.path).write_bytes(b"PK")
    job = _job([point])
    local, skipped = pick_resume_point(store, job)
    assert local is None
    assert (job.resume_from, job.resume_epoch) == (None, 0)
    assert len(skipped) == 1


def test_a_fresh_trial_loads_nothing(tmp_path: Path) -> None:
    assert pick_resume_point(LocalStore(tmp_path), _job([])) == (None, [])
