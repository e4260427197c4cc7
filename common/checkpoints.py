"""Checkpoint names and the checkpoint store.

A checkpoint's file name starts with its validation score (the seed: "include the
validation performance directly in the filename, so that it is simple to inspect and
sort"): `val0.9731_ep012.npz`. For a maximised metric `ls | sort -r` ranks best first.
Files are NumPy `.npz` archives (or Torch `.pt` state dicts) written and read without
pickle; writes are atomic (a temporary file, fsync, then a rename or a single PUT).
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

from gridless.common.checkpoint_files import digest_stream, npz_writer, read_npz
from gridless.common.errors import NotFoundError, StorageError

__all__ = [
    "LOG_NAME",
    "CheckpointFile",
    "CheckpointName",
    "CheckpointStore",
    "LocalStore",
    "ObjectStore",
    "format_name",
    "is_url",
    "metric_tag",
    "open_store",
    "parse_name",
    "store_options_from_env",
    "trial_folder",
]

_NAME = re.compile(
    r"^(?:val(?P<acc>[01]\.\d{4})|loss(?P<loss>\d{4}\.\d{4})"
    r"|(?P<tag>[a-z][a-z0-9-]{0,31})_(?P<score>-?\d{4,}\.\d{4}))"
    r"_ep(?P<epoch>\d{3,6})\.(?P<suffix>npz|pt)$"
)
SUFFIXES = ("npz", "pt")
LOG_NAME = "trial.log"  # a trial's stdout and stderr, beside its checkpoints
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
    `val_loss` -> `loss0002.3026_ep012.npz` (`sort` ranks best first);
    any other metric -> its name without `val_`, `_` as `-`, then the score with at least
    four integer digits: `val_r2` -> `r2_0000.9312_ep012.pt`, `r2_-0000.1200_ep003.pt`.
    Non-negative scores sort with a plain `sort`; `sort -t_ -k2 -g` also orders negative
    ones (docs/trainers.md).

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
    if not math.isfinite(score):
        raise ValueError(f"a checkpoint score must be finite, but got {score!r}")
    sign = "-" if score < 0 else ""
    return f"{metric_tag(metric)}_{sign}{abs(score):09.4f}_ep{epoch:03d}.{suffix}"


def trial_folder(trial_number: int) -> str:
    """The store folder of a trial: its number, zero-padded so folders sort by number."""
    return f"{trial_number:06d}"


def metric_tag(metric: str) -> str:
    """The short form of a metric name in checkpoint names: `val_r2` -> `r2`.

    Raises:
        ValueError: for a name that does not make a safe file-name part.
    """
    tag = (metric[4:] if metric.startswith("val_") else metric).lower().replace("_", "-")
    if not re.fullmatch(r"[a-z][a-z0-9-]{0,31}", tag):
        raise ValueError(f"metric {metric!r} does not make a checkpoint name")
    return tag


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
    if match["loss"] is not None:
        return CheckpointName(float(match["loss"]), epoch, "val_loss", suffix)
    return CheckpointName(float(match["score"]), epoch, match["tag"], suffix)


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
    """Where checkpoints live, one folder a trial: `<root>/<study>/<trial>/<name>`.

    Two backends share this interface: `LocalStore` (a directory, also an NFS-style
    shared path) and `ObjectStore` (any fsspec URL: `s3://bucket/prefix`, `gs://...`).
    `open_store` picks one from a location string. Paths handed out (`relpath`) are
    relative to the root and always `<study>/<trial>/<checkpoint name>`.
    """

    location: str

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
        """Write one checkpoint so that no reader ever sees a partial file under its final
        score-first name; `writer` fills a file object."""
        raise NotImplementedError

    def fetch(self, relpath: str) -> Path:
        """A local file holding the stored checkpoint `relpath` (the file itself for a
        local store, a downloaded copy for an object store).

        Raises:
            NotFoundError: for a path outside the store or no such checkpoint.
        """
        raise NotImplementedError

    def delete(self, relpath: str) -> None:
        """Remove one checkpoint; a missing one is not an error."""
        raise NotImplementedError

    def list_trial(self, study: str, trial: str) -> list[str]:
        """Checkpoint file names of one trial, sorted by name (ascending)."""
        raise NotImplementedError

    def write_log(self, study: str, trial: str, data: bytes) -> None:
        """Replace the trial's `trial.log` (its stdout and stderr) atomically."""
        raise NotImplementedError

    def read_log(self, study: str, trial: str) -> bytes:
        """The trial's `trial.log`.

        Raises:
            NotFoundError: when the trial has none (yet).
        """
        raise NotImplementedError

    def ensure_trial_dir(self, study: str, trial: str) -> None:
        """Make a trial's folder exist (only directories need it); checks the names."""
        _check_part("study name", study)
        _check_part("trial id", trial)

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
        writer = npz_writer(arrays, meta)  # checked before any byte is written
        return self.write_with(
            study, trial, score=score, epoch=epoch, metric=metric, suffix="npz", writer=writer
        )

    def read(self, relpath: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Load a checkpoint's arrays and metadata, never unpickling anything."""
        arrays, meta = read_npz(self.fetch(relpath))
        return arrays, meta or {}


def _fill(folder: Path, suffix: str, writer: Callable[[BinaryIO], None]) -> tuple[str, int, str]:
    """Write a temporary file in `folder` with `writer`, fsync it; (name, size, sha256)."""
    fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", suffix="." + suffix, dir=folder)
    try:
        with os.fdopen(fd, "w+b") as handle:
            writer(handle)
            handle.flush()
            os.fsync(handle.fileno())
            handle.seek(0)
            size, sha256 = digest_stream(handle)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return tmp_name, size, sha256


def _split_relpath(relpath: str) -> tuple[str, str, str]:
    """`<study>/<trial>/<checkpoint name>`, each part checked; anything else is not found."""
    parts = relpath.split("/")
    try:
        if len(parts) != 3 or not _NAME.match(parts[2]):
            raise ValueError(relpath)
        return _check_part("study name", parts[0]), _check_part("trial id", parts[1]), parts[2]
    except ValueError:
        raise NotFoundError(f"no checkpoint {relpath[:200]!r} in the store") from None


class LocalStore(CheckpointStore):
    """A directory (local disk or a shared NFS-style mount): temporary file in the trial's
    folder, fsync, rename, fsync of the folder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.location = str(self.root)

    def trial_dir(self, study: str, trial: str) -> Path:
        """The folder of one trial (not created)."""
        return self.root / _check_part("study name", study) / _check_part("trial id", trial)

    def ensure_trial_dir(self, study: str, trial: str) -> None:
        path = self.trial_dir(study, trial)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create {path}: {exc.strerror}") from exc

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
        self.ensure_trial_dir(study, trial)
        folder = self.trial_dir(study, trial)
        final = folder / format_name(score, epoch, metric=metric, suffix=suffix)
        tmp_name = ""
        try:
            tmp_name, size, sha256 = _fill(folder, suffix, writer)
            os.replace(tmp_name, final)
            _fsync_dir(folder)
        except OSError as exc:
            if tmp_name:
                Path(tmp_name).unlink(missing_ok=True)
            raise StorageError(f"cannot write checkpoint {final}: {exc.strerror}") from exc
        return CheckpointFile(final.relative_to(self.root).as_posix(), size, sha256)

    def resolve(self, relpath: str) -> Path:
        """The absolute path of a stored file; refuses anything outside the store.

        Raises:
            NotFoundError: for a path outside the store, a symlink out of it, or no file.
        """
        candidate = (self.root / relpath).resolve()
        if not candidate.is_relative_to(self.root) or not candidate.is_file():
            raise NotFoundError(f"no checkpoint {relpath!r} in the store")
        return candidate

    def fetch(self, relpath: str) -> Path:
        return self.resolve(relpath)

    def delete(self, relpath: str) -> None:
        self._located(relpath).unlink(missing_ok=True)

    def _located(self, relpath: str) -> Path:
        """Where `relpath` would lie inside the store (the file need not exist)."""
        study, trial, name = _split_relpath(relpath)
        return self.trial_dir(study, trial) / name

    def list_trial(self, study: str, trial: str) -> list[str]:
        folder = self.trial_dir(study, trial)
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if _NAME.match(p.name))

    def write_log(self, study: str, trial: str, data: bytes) -> None:
        self.ensure_trial_dir(study, trial)
        folder = self.trial_dir(study, trial)
        tmp_name = ""

        def write(handle: BinaryIO) -> None:
            handle.write(data)

        try:
            tmp_name, _, _ = _fill(folder, "log", write)
            os.replace(tmp_name, folder / LOG_NAME)
        except OSError as exc:
            if tmp_name:
                Path(tmp_name).unlink(missing_ok=True)
            raise StorageError(f"cannot write {folder / LOG_NAME}: {exc.strerror}") from exc

    def read_log(self, study: str, trial: str) -> bytes:
        path = self.trial_dir(study, trial) / LOG_NAME
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"no log for trial {trial} yet") from None
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror}") from exc


class ObjectStore(CheckpointStore):
    """An fsspec file system, for object stores (`s3://bucket/prefix`).

    A checkpoint is written to a local temporary file, hashed, then uploaded with one
    PUT: an object store makes an object visible only once its upload completed, so no
    partial file ever shows under a final name. Reads download into a local cache
    folder (atomically too) and hand out that copy.

    Options for the file system (`endpoint_url`, `key`, ...) come from the
    `GRIDLESS_STORE_OPTIONS` environment variable (JSON) unless given; credentials are
    best left to the provider's own variables (`AWS_ACCESS_KEY_ID`, ...) or roles.
    """

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        import fsspec

        if options is None:
            options = store_options_from_env()
        try:
            fs, root = fsspec.core.url_to_fs(url, **dict(options))
        except (ImportError, ValueError) as exc:
            raise StorageError(f"cannot open the store {url!r}: {exc}") from exc
        self.fs = fs
        self.root = root.rstrip("/")
        self.location = url
        cache_key = hashlib.sha256(url.encode()).hexdigest()[:16]
        self.cache = Path(tempfile.gettempdir()) / f"gridless-store-cache-{cache_key}"

    def _key(self, relpath: str) -> str:
        study, trial, name = _split_relpath(relpath)
        return f"{self.root}/{study}/{trial}/{name}"

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
        self.ensure_trial_dir(study, trial)
        relpath = f"{study}/{trial}/{format_name(score, epoch, metric=metric, suffix=suffix)}"
        with tempfile.TemporaryDirectory(prefix="gridless-upload-") as folder:
            tmp_name, size, sha256 = _fill(Path(folder), suffix, writer)
            try:
                self.fs.put_file(tmp_name, self._key(relpath))
            except Exception as exc:  # each fsspec backend raises its own (botocore, ...)
                raise StorageError(f"cannot upload checkpoint {relpath}: {exc}") from exc
        return CheckpointFile(relpath, size, sha256)

    def fetch(self, relpath: str) -> Path:
        key = self._key(relpath)
        local = self.cache / relpath
        local.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", dir=local.parent)
        os.close(fd)
        try:
            self.fs.get_file(key, tmp_name)
            os.replace(tmp_name, local)
        except FileNotFoundError:
            raise NotFoundError(f"no checkpoint {relpath!r} in the store") from None
        except Exception as exc:  # each fsspec backend raises its own
            raise StorageError(f"cannot download checkpoint {relpath}: {exc}") from exc
        finally:
            Path(tmp_name).unlink(missing_ok=True)
        return local

    def delete(self, relpath: str) -> None:
        try:
            self.fs.rm_file(self._key(relpath))
        except FileNotFoundError:
            pass
        except Exception as exc:  # each fsspec backend raises its own
            raise StorageError(f"cannot delete checkpoint {relpath}: {exc}") from exc
        (self.cache / relpath).unlink(missing_ok=True)

    def list_trial(self, study: str, trial: str) -> list[str]:
        prefix = f"{self.root}/{_check_part('study name', study)}/{_check_part('trial id', trial)}"
        try:
            names = [str(p).rsplit("/", 1)[-1] for p in self.fs.ls(prefix, detail=False)]
        except FileNotFoundError:
            return []
        return sorted(n for n in names if _NAME.match(n))

    def _log_key(self, study: str, trial: str) -> str:
        folder = f"{_check_part('study name', study)}/{_check_part('trial id', trial)}"
        return f"{self.root}/{folder}/{LOG_NAME}"

    def write_log(self, study: str, trial: str, data: bytes) -> None:
        try:
            self.fs.pipe_file(self._log_key(study, trial), data)  # one PUT
        except Exception as exc:  # each fsspec backend raises its own
            raise StorageError(f"cannot upload the log of trial {trial}: {exc}") from exc

    def read_log(self, study: str, trial: str) -> bytes:
        try:
            data: bytes = self.fs.cat_file(self._log_key(study, trial))
        except FileNotFoundError:
            raise NotFoundError(f"no log for trial {trial} yet") from None
        except Exception as exc:  # each fsspec backend raises its own
            raise StorageError(f"cannot download the log of trial {trial}: {exc}") from exc
        return data


def store_options_from_env() -> dict[str, Any]:
    """fsspec options from `GRIDLESS_STORE_OPTIONS` (a JSON object), or none."""
    raw = os.environ.get("GRIDLESS_STORE_OPTIONS", "").strip()
    if not raw:
        return {}
    try:
        options = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise StorageError(f"GRIDLESS_STORE_OPTIONS is not JSON: {exc.msg}") from None
    if not isinstance(options, dict):
        raise StorageError("GRIDLESS_STORE_OPTIONS must be a JSON object")
    return options


def is_url(location: str | Path) -> bool:
    """Whether a store location names an fsspec URL rather than a local path."""
    return isinstance(location, str) and re.match(r"^[a-z][a-z0-9+.-]*://", location) is not None


def open_store(location: str | Path) -> CheckpointStore:
    """The store at a path (`LocalStore`) or an fsspec URL such as `s3://bucket/runs`
    (`ObjectStore`); `file://` URLs are local paths."""
    if isinstance(location, str) and location.startswith("file://"):
        return LocalStore(location.removeprefix("file://"))
    if is_url(location):
        return ObjectStore(str(location))
    return LocalStore(location)


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
