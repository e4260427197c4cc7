"""Data sets: the fixed split, mean subtraction on train only, npz (labels, float
targets, images) and CIFAR-10 binary."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gridless.worker.data import CIFAR_RECORD, _digits, load_dataset
from tests.worker.datasets import write_linear_regression


def test_digits_split_is_fixed_disjoint_and_mean_subtracted_on_train_only() -> None:
    data = load_dataset("digits")
    assert (data.x_train.shape[1], data.num_classes, data.image_shape) == (64, 10, (1, 8, 8))
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (1257, 270, 270)
    np.testing.assert_allclose(data.x_train.mean(axis=0), 0.0, atol=1e-12)
    assert not np.allclose(data.x_val.mean(axis=0), 0.0, atol=1e-3)
    again = _digits()  # a fresh load, bypassing the per-process cache, splits the same way
    np.testing.assert_array_equal(again.y_val, data.y_val)
    np.testing.assert_array_equal(again.x_test, data.x_test)


def write_cifar(path: Path, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(10, size=n, dtype=np.uint8)
    pixels = rng.integers(256, size=(n, 3072), dtype=np.uint8)
    np.concatenate([labels[:, None], pixels], axis=1).tofile(path)
    return labels, pixels


def test_cifar10_binary_format_from_a_local_directory(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    write_cifar(tmp_path / "data_batch_1.bin", 30, rng)
    write_cifar(tmp_path / "data_batch_2.bin", 20, rng)
    test_labels, test_pixels = write_cifar(tmp_path / "test_batch.bin", 10, rng)
    data = load_dataset({"cifar10": str(tmp_path)})
    assert data.image_shape == (3, 32, 32)
    assert (len(data.y_train) + len(data.y_val), len(data.y_test)) == (50, 10)
    np.testing.assert_array_equal(data.y_test, test_labels)
    train_mean = (data.x_train + 0).mean(axis=0)
    np.testing.assert_allclose(train_mean, 0.0, atol=1e-12)
    # the official test batch is kept as the test split, shifted by the training mean only
    shift = test_pixels[0] / 255.0 - data.x_test[0]
    np.testing.assert_allclose(data.x_test[1] + shift, test_pixels[1] / 255.0)


def test_cifar10_wrong_size_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "data_batch_1.bin").write_bytes(b"\x00" * (CIFAR_RECORD + 5))
    with pytest.raises(
        ValueError, match=r"data_batch_1.bin: expected CIFAR-10 binary records of 3073 bytes"
    ):
        load_dataset({"cifar10": str(tmp_path)})
    with pytest.raises(ValueError, match=r"expected CIFAR-10 binary files data_batch_1.bin"):
        load_dataset({"cifar10": str(tmp_path / "empty")})


def test_npz_dataset_and_its_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "good.npz"
    np.savez(path, x=np.random.default_rng(0).standard_normal((40, 3)), y=np.arange(40) % 4)
    data = load_dataset({"npz": str(path)})
    assert (data.num_features, data.num_classes, data.image_shape) == (3, 4, None)
    assert not data.is_regression
    assert data.num_outputs == 4
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros((20, 3, 2)), y=np.zeros(20, dtype=np.int64))
    with pytest.raises(
        ValueError,
        match=r"bad.npz: expected 'x' of shape \(N, D\) or \(N, C, H, W\) and 'y' of shape "
        r"\(N,\) or \(N, k\) with N >= 10, got x \(20, 3, 2\) and y \(20,\)",
    ):
        load_dataset({"npz": str(bad)})
    np.savez(bad, x=np.zeros((20, 3)), y=np.array(["a"] * 20))
    with pytest.raises(
        ValueError,
        match=r"bad.npz: expected numeric 'x' and integer \(classes\) or float \(regression\) "
        r"'y', got float64 and <U1",
    ):
        load_dataset({"npz": str(bad)})
    np.savez(bad, x=np.zeros((20, 3)), y=np.zeros((20, 2), dtype=np.int64))
    with pytest.raises(
        ValueError, match=r"bad.npz: integer labels in 'y' must have shape \(N,\), got \(20, 2\)"
    ):
        load_dataset({"npz": str(bad)})
    np.savez(bad, x=np.zeros((20, 3)), y=np.r_[np.zeros(19), np.nan])
    with pytest.raises(ValueError, match=r"bad.npz: float targets in 'y' must be finite"):
        load_dataset({"npz": str(bad)})
    np.savez(bad, a=np.zeros(3))
    with pytest.raises(
        ValueError, match=r"bad.npz: expected arrays 'x' \(N, D\) and 'y' \(N,\), found \['a'\]"
    ):
        load_dataset({"npz": str(bad)})
    with pytest.raises(
        ValueError,
        match=r"unknown dataset 'cifar'; valid: digits, \{npz: path\}, \{cifar10: directory\}",
    ):
        load_dataset("cifar")


@pytest.mark.parametrize("k", [1, 3])
def test_float_targets_make_a_regression_data_set(tmp_path: Path, k: int) -> None:
    path = write_linear_regression(tmp_path / "reg.npz", n=100, k=k)
    with np.load(path) as raw:
        x, y = raw["x"], raw["y"].reshape(100, k)
    data = load_dataset({"npz": str(path)})
    assert data.is_regression
    assert (data.num_features, data.num_classes, data.num_outputs) == (8, 0, k)
    assert (data.y_train.shape, data.y_val.shape, data.y_test.shape) == ((70, k), (15, k), (15, k))
    assert data.y_train.dtype == np.float64
    # features are mean-subtracted as for classification; targets keep their values
    np.testing.assert_allclose(data.x_train.mean(axis=0), 0.0, atol=1e-12)
    rows = [int(np.flatnonzero((y == t).all(axis=1))[0]) for t in data.y_val]
    shift = data.x_val - x[rows]  # one shift for every row: the training mean
    np.testing.assert_allclose(shift, np.broadcast_to(shift[0], shift.shape), atol=1e-12)


def test_integer_valued_floats_are_still_regression_and_integers_classification(
    tmp_path: Path,
) -> None:
    x = np.random.default_rng(0).standard_normal((30, 2))
    np.savez(tmp_path / "floats.npz", x=x, y=(np.arange(30) % 3).astype(np.float64))
    np.savez(tmp_path / "ints.npz", x=x, y=np.arange(30) % 3)
    assert load_dataset({"npz": str(tmp_path / "floats.npz")}).is_regression
    labels = load_dataset({"npz": str(tmp_path / "ints.npz")})
    assert (labels.is_regression, labels.num_classes, labels.y_train.ndim) == (False, 3, 1)


def test_npz_images_keep_their_shape_for_the_convnets(tmp_path: Path) -> None:
    images = np.random.default_rng(0).random((40, 3, 4, 6))
    np.savez(tmp_path / "img.npz", x=images, y=np.arange(40) % 2)
    data = load_dataset({"npz": str(tmp_path / "img.npz")})
    assert (data.image_shape, data.num_features) == ((3, 4, 6), 72)
    # flat rows are the images in (C, H, W) order, shifted by the training mean only
    first = data.x_train[0] - data.x_train[1]
    order = np.random.default_rng(20150101).permutation(40)
    train = order[6 + 6 :]  # 15 % test, then 15 % validation
    expected = (images[train[0]] - images[train[1]]).reshape(3, 4, 6)
    np.testing.assert_allclose(first.reshape(data.image_shape), expected)
