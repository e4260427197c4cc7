"""Data sets: scikit-learn's bundled digits, an `.npz` file, or CIFAR-10's binary format
from a local directory, split once with a fixed seed.

Integer labels make a classification data set; float targets (an `.npz` only) make a
regression one.

The split never depends on a trial: train / validation / test are the same for every
trial of every study (the seed: "prefer one validation fold"). The test split is kept
for the final evaluation only. Mean subtraction uses the training split's mean alone.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["DATASETS", "Dataset", "load_dataset"]

SPLIT_SEED = 20150101
VAL_FRACTION = 0.15
TEST_FRACTION = 0.15


@dataclass(frozen=True)
class Dataset:
    """Features (N, D) float64 and, for each split, labels (N,) int64 (classification) or
    targets (N, k) float64 (regression).

    Images are kept flat, (N, C*H*W), with `image_shape` = (C, H, W): the convnets reshape
    them, the MLPs read them as features. `num_classes` is 0 for regression.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    image_shape: tuple[int, int, int] | None = None  # (C, H, W) when examples are images

    @property
    def num_features(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def is_regression(self) -> bool:
        """Float targets: a regression data set."""
        return bool(np.issubdtype(self.y_train.dtype, np.floating))

    @property
    def num_outputs(self) -> int:
        """Output units a model needs: C classes, or the k targets of a regression."""
        return int(self.y_train.shape[1]) if self.is_regression else self.num_classes


def _split(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    *,
    image_shape: tuple[int, int, int] | None = None,
    test: tuple[np.ndarray, np.ndarray] | None = None,
) -> Dataset:
    """Fixed split; a given `test` pair (an official test set) is kept as the test split."""
    n = x.shape[0]
    order = np.random.default_rng(SPLIT_SEED).permutation(n)
    n_val = round(n * VAL_FRACTION)
    if test is None:
        n_test = round(n * TEST_FRACTION)
        test_idx, rest = order[:n_test], order[n_test:]
        x_test, y_test = x[test_idx], y[test_idx]
    else:
        rest = order
        x_test, y_test = test
    val, train = rest[:n_val], rest[n_val:]
    mean = x[train].mean(axis=0)  # training split only
    if np.issubdtype(y.dtype, np.floating):
        classes = 0  # regression
    else:
        classes = int(max(y.max(), y_test.max() if len(y_test) else 0)) + 1
    return Dataset(
        name,
        x[train] - mean,
        y[train],
        x[val] - mean,
        y[val],
        x_test - mean,
        y_test,
        classes,
        image_shape,
    )


def _digits() -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = np.asarray(bunch.data, dtype=np.float64) / 16.0
    return _split("digits", x, np.asarray(bunch.target, dtype=np.int64), image_shape=(1, 8, 8))


def _npz(path: str) -> Dataset:
    """`x` (N, D) or images (N, C, H, W); integer labels `y` (N,) or float targets (N,) or
    (N, k). Images are flattened with their (C, H, W) kept; targets become (N, k)."""
    file = Path(path)
    try:
        with np.load(file, allow_pickle=False) as data:
            if "x" not in data.files or "y" not in data.files:
                raise ValueError(
                    f"{file}: expected arrays 'x' (N, D) and 'y' (N,), found {sorted(data.files)}"
                )
            x, y = data["x"], data["y"]
    except OSError as exc:
        raise ValueError(f"{file}: cannot read ({exc})") from None
    if x.ndim not in (2, 4) or y.ndim not in (1, 2) or x.shape[0] != y.shape[0] or len(x) < 10:
        raise ValueError(
            f"{file}: expected 'x' of shape (N, D) or (N, C, H, W) and 'y' of shape (N,) "
            f"or (N, k) with N >= 10, got x {x.shape} and y {y.shape}"
        )
    integer, floating = np.issubdtype(y.dtype, np.integer), np.issubdtype(y.dtype, np.floating)
    if not np.issubdtype(x.dtype, np.number) or not (integer or floating):
        raise ValueError(
            f"{file}: expected numeric 'x' and integer (classes) or float (regression) 'y', "
            f"got {x.dtype} and {y.dtype}"
        )
    image_shape = (int(x.shape[1]), int(x.shape[2]), int(x.shape[3])) if x.ndim == 4 else None
    features = x.reshape(len(x), -1).astype(np.float64)
    if floating:
        if not np.isfinite(y).all():
            raise ValueError(f"{file}: float targets in 'y' must be finite, found NaN or inf")
        targets = y.astype(np.float64).reshape(len(y), -1)
        return _split(file.name, features, targets, image_shape=image_shape)
    if y.ndim != 1:
        raise ValueError(f"{file}: integer labels in 'y' must have shape (N,), got {y.shape}")
    if y.min() < 0:
        raise ValueError(f"{file}: labels in 'y' must be >= 0, got min {y.min()}")
    return _split(file.name, features, y.astype(np.int64), image_shape=image_shape)


CIFAR_RECORD = 1 + 3 * 32 * 32


def _cifar_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % CIFAR_RECORD:
        raise ValueError(
            f"{path}: expected CIFAR-10 binary records of {CIFAR_RECORD} bytes "
            f"(1 label byte + 3x32x32 pixels), got {raw.size} bytes"
        )
    records = raw.reshape(-1, CIFAR_RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise ValueError(f"{path}: CIFAR-10 labels must be 0..9, found {labels.max()}")
    return records[:, 1:].astype(np.float64) / 255.0, labels


def _cifar10(directory: str) -> Dataset:
    folder = Path(directory)
    batches = sorted(folder.glob("data_batch_*.bin"))
    if not batches:
        raise ValueError(
            f"{folder}: expected CIFAR-10 binary files data_batch_1.bin ... (and test_batch.bin)"
        )
    parts = [_cifar_file(p) for p in batches]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    test_file = folder / "test_batch.bin"
    test = _cifar_file(test_file) if test_file.is_file() else None
    return _split("cifar10", x, y, image_shape=(3, 32, 32), test=test)


DATASETS = ("digits", "{npz: path}", "{cifar10: directory}")


@functools.lru_cache(maxsize=4)
def _load_cached(key: str, path: str) -> Dataset:
    if key == "digits":
        return _digits()
    if key == "cifar10":
        return _cifar10(path)
    return _npz(path)


def load_dataset(spec: str | Mapping[str, str]) -> Dataset:
    """Load a data set named in a study spec (`digits` or `{npz: path}`), cached per process.

    Raises:
        ValueError: for an unknown name or a malformed file, naming what was expected.
    """
    if spec == "digits":
        return _load_cached("digits", "")
    if isinstance(spec, Mapping) and len(spec) == 1:
        ((kind, path),) = spec.items()
        if kind in ("npz", "cifar10"):
            return _load_cached(kind, str(Path(path).resolve()))
    raise ValueError(f"unknown dataset {spec!r}; valid: {', '.join(DATASETS)}")
