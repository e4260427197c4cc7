"""Where a trial's checkpoints live and which one a resumed attempt restores.

Shared by the built-in trainers' loop (`worker.loop`) and the function API's runner
(`worker.function_runner`).
"""

from __future__ import annotations

from pathlib import Path

from gridless.common.checkpoint_files import digest_file
from gridless.common.checkpoints import CheckpointStore, trial_folder
from gridless.common.errors import GridlessError
from gridless.common.messages import Assignment

__all__ = ["pick_resume_point", "trial_folder", "trial_seed"]


def trial_seed(job: Assignment) -> int:
    """The seed of a trial's own randomness (initialization, shuffling, dropout)."""
    return job.seed * 1_000_003 + job.trial_number


def pick_resume_point(store: CheckpointStore, job: Assignment) -> tuple[Path | None, list[str]]:
    """The local file of the newest resume candidate whose size and SHA-256 match what the
    master recorded; missing, truncated or corrupt ones are skipped (and returned, for a
    warning). Sets `job.resume_from`/`job.resume_epoch` to the choice; with no usable
    candidate the trial starts over from epoch 1."""
    if not job.resume_candidates:
        if job.resume_from is None:
            return None, []
        return store.fetch(job.resume_from), []  # a master that sends no hashes
    skipped: list[str] = []
    for point in job.resume_candidates:
        try:
            local = store.fetch(point.path)
        except GridlessError as exc:
            skipped.append(f"{point.path} ({exc})")
            continue
        size, digest = digest_file(local)
        if (size, digest) != (point.size, point.sha256):
            skipped.append(f"{point.path} (size {size} or SHA-256 does not match the record)")
            continue
        job.resume_from, job.resume_epoch = point.path, point.epoch
        return local, skipped
    job.resume_from, job.resume_epoch = None, 0
    return None, skipped
