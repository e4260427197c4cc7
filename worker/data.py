"""Data sets: scikit-learn's bundled digits or an `.npz` file, split once with a fixed seed.

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
    """Features (N, D) float64, labels (N,) int64, for each split."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int

    @property
    def num_features(self) -> int:
        return int(self.x_train.shape[1])


def _split(name: str, x: np.ndarray, y: np.ndarray) -> Dataset:
    n = x.shape[0]
    order = np.random.default_rng(SPLIT_SEED).permutation(n)
    n_test, n_val = round(n * TEST_FRACTION), round(n * VAL_FRACTION)
    test, val, train = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
    mean = x[train].mean(axis=0)  # training split only
    x = x - mean
    return Dataset(name, x[train], y[train], x[val], y[val], x[test], y[test], int(y.max()) + 1)


def _digits() -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = np.asarray(bunch.data, dtype=np.float64) / 16.0
    return _split("digits", x, np.asarray(bunch.target, dtype=np.int64))


def _npz(path: str) -> Dataset:
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
    if x.ndim != 2 or y.ndim != 1 or x.shape[0] != y.shape[0] or x.shape[0] < 10:
        raise ValueError(
            f"{file}: expected 'x' of shape (N, D) and 'y' of shape (N,) with N >= 10, "
            f"got x {x.shape} and y {y.shape}"
        )
    if not np.issubdtype(x.dtype, np.number) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(
            f"{file}: expected numeric 'x' and integer 'y', got {x.dtype} and {y.dtype}"
        )
    if y.min() < 0:
        raise ValueError(f"{file}: labels in 'y' must be >= 0, got min {y.min()}")
    return _split(file.name, x.astype(np.float64), y.astype(np.int64))


DATASETS = ("digits", "{npz: path}")


@functools.lru_cache(maxsize=4)
def _load_cached(key: str, path: str) -> Dataset:
    if key == "digits":
        return _digits()
    return _npz(path)


def load_dataset(spec: str | Mapping[str, str]) -> Dataset:
    """Load a data set named in a study spec (`digits` or `{npz: path}`), cached per process.

    Raises:
        ValueError: for an unknown name or a malformed file, naming what was expected.
    """
    if spec == "digits":
        return _load_cached("digits", "")
    if isinstance(spec, Mapping) and set(spec) == {"npz"}:
        return _load_cached("npz", str(Path(spec["npz"]).resolve()))
    raise ValueError(f"unknown dataset {spec!r}; valid: {', '.join(DATASETS)}")
