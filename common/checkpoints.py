"""Checkpoint names and the checkpoint store.

A checkpoint's file name starts with its validation score (the seed: "include the
validation performance directly in the filename, so that it is simple to inspect and
sort"): `val0.9731_ep012.npz`. For a maximised metric `ls | sort -r` ranks best first.
Files are NumPy `.npz` archives written and read without pickle; writes are atomic
(temporary file in the trial's folder, fsync, rename).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from common.errors import NotFoundError, StorageError

__all__ = [
    "CheckpointFile",
    "CheckpointName",
    "CheckpointStore",
    "format_name",
    "parse_name",
]

_NAME = re.compile(
    r"^(?:val(?P<acc>[01]\.\d{4})|loss(?P<loss>\d{4}\.\d{4}))_ep(?P<epoch>\d{3,6})"
    r"\.(?P<suffix>npz|pt)$"
)
SUFFIXES = ("npz", "pt")
_META_KEY = "__meta__"
_SAFE_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class CheckpointName:
    """The parsed parts of a checkpoint file name."""

    score: float
    epoch: int
    metric: str
    suffix: str = "npz"


def format_name(
    score: float, epoch: int, *, metric: str = "val_accuracy", suffix: str = "npz"
) -> str:
    """The file name of a checkpoint; fixed width, so names sort by score.

    `val_accuracy` -> `val0.9731_ep012.npz` (`sort -r` ranks best first);
    `val_loss` -> `loss0002.3026_ep012.npz` (`sort` ranks best first).

    Raises:
        ValueError: for a score outside its metric's range ([0, 1] for accuracy,
            [0, 9999.9999] for loss), a non-finite score, or an epoch outside [0, 999999].
    """
    if not 0 <= epoch <= 999_999:
        raise ValueError(f"a checkpoint epoch must be in [0, 999999], but got {epoch!r}")
    if suffix not in SUFFIXES:
        raise ValueError(f"unknown checkpoint suffix {suffix!r}; valid: {', '.join(SUFFIXES)}")
    if metric == "val_accuracy":
        if not (math.isfinite(score) and 0.0 <= score <= 1.0):
            raise ValueError(f"an accuracy must be in [0, 1], but got {score!r}")
        return f"val{score:.4f}_ep{epoch:03d}.{suffix}"
    if metric == "val_loss":
        if not (math.isfinite(score) and 0.0 <= score < 9999.99995):
            raise ValueError(
                f"a loss for a file name must be in [0, 9999.9999], but got {score!r}"
            )
        return f"loss{score:09.4f}_ep{epoch:03d}.{suffix}"
    raise ValueError(f"unknown metric {metric!r}; valid: val_accuracy, val_loss")


def parse_name(name: str) -> CheckpointName:
    """Inverse of `format_name` (the score back to 4 decimals).

    Raises:
        ValueError: when `name` is not a checkpoint file name.
    """
    match = _NAME.match(name)
    if match is None:
        raise ValueError(f"not a checkpoint file name: {name!r} (expected val0.9731_ep012.npz)")
    epoch, suffix = int(match["epoch"]), match["suffix"]
    if match["acc"] is not None:
        return CheckpointName(float(match["acc"]), epoch, "val_accuracy", suffix)
    return CheckpointName(float(match["loss"]), epoch, "val_loss", suffix)


@dataclass(frozen=True)
class CheckpointFile:
    """A checkpoint as written: where it lies (relative to the store root) and its digest."""

    relpath: str
    size: int
    sha256: str


def _check_part(kind: str, value: str) -> str:
    if not _SAFE_PART.match(value) or value in {".", ".."}:
        raise ValueError(f"unsafe {kind} for a store path: {value!r}")
    return value


class CheckpointStore:
    """A directory of checkpoints, one folder a trial: `<root>/<study>/<trial>/`."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    def trial_dir(self, study: str, trial: str) -> Path:
        """The folder of one trial (not created)."""
        return self.root / _check_part("study name", study) / _check_part("trial id", trial)

    def ensure_trial_dir(self, study: str, trial: str) -> Path:
        """Create (if needed) and return the folder of one trial."""
        path = self.trial_dir(study, trial)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create {path}: {exc.strerror}") from exc
        return path

    def write_with(
        self,
        study: str,
        trial: str,
        *,
        score: float,
        epoch: int,
        metric: str = "val_accuracy",
        suffix: str = "npz",
        writer: Callable[[BinaryIO], None],
    ) -> CheckpointFile:
        """Write one checkpoint atomically: `writer` fills a temporary file in the trial's
        folder, which is fsynced, hashed and renamed to its final score-first name."""
        folder = self.ensure_trial_dir(study, trial)
        final = folder / format_name(score, epoch, metric=metric, suffix=suffix)
        fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", suffix="." + suffix, dir=folder)
        digest = hashlib.sha256()
        try:
            with os.fdopen(fd, "w+b") as handle:
                writer(handle)
                handle.flush()
                os.fsync(handle.fileno())
                handle.seek(0)
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
                size = handle.tell()
            os.replace(tmp_name, final)
            _fsync_dir(folder)
        except OSError as exc:
            Path(tmp_name).unlink(missing_ok=True)
            raise StorageError(f"cannot write checkpoint {final}: {exc.strerror}") from exc
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        return CheckpointFile(final.relative_to(self.root).as_posix(), size, digest.hexdigest())

    def write(
        self,
        study: str,
        trial: str,
        *,
        score: float,
        epoch: int,
        metric: str = "val_accuracy",
        arrays: Mapping[str, np.ndarray],
        meta: Mapping[str, Any],
    ) -> CheckpointFile:
        """Write arrays and JSON metadata as an `.npz` checkpoint (no pickle), atomically."""
        payload = {key: np.asarray(value) for key, value in arrays.items()}
        if _META_KEY in payload:
            raise ValueError(f"array name {_META_KEY!r} is reserved")
        for key, value in payload.items():
            if value.dtype.hasobject:  # would be pickled; checkpoints never hold pickles
                raise ValueError(f"array {key!r} has dtype object; checkpoints hold plain arrays")
        meta_json = json.dumps(dict(meta), allow_nan=False, sort_keys=True)
        payload[_META_KEY] = np.frombuffer(meta_json.encode("utf-8"), dtype=np.uint8)
        return self.write_with(
            study,
            trial,
            score=score,
            epoch=epoch,
            metric=metric,
            suffix="npz",
            writer=lambda handle: np.savez(handle, allow_pickle=False, **payload),
        )

    def resolve(self, relpath: str) -> Path:
        """The absolute path of a stored file; refuses anything outside the store.

        Raises:
            NotFoundError: for a path outside the store, a symlink out of it, or no file.
        """
        candidate = (self.root / relpath).resolve()
        if not candidate.is_relative_to(self.root) or not candidate.is_file():
            raise NotFoundError(f"no checkpoint {relpath!r} in the store")
        return candidate

    def read(self, relpath: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Load a checkpoint's arrays and metadata, never unpickling anything."""
        path = self.resolve(relpath)
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files if key != _META_KEY}
            meta = json.loads(bytes(data[_META_KEY]).decode("utf-8"))
        return arrays, meta

    def list_trial(self, study: str, trial: str) -> list[str]:
        """Checkpoint file names of one trial, sorted by name (ascending)."""
        folder = self.trial_dir(study, trial)
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if _NAME.match(p.name))


def _fsync_dir(folder: Path) -> None:
    # Make the rename itself durable; not every platform allows opening a directory.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
