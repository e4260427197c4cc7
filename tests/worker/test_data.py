"""Data sets: the fixed split, mean subtraction on train only, npz and CIFAR-10 binary."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gridless.worker.data import CIFAR_RECORD, _digits, load_dataset


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
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros((20, 3, 2)), y=np.zeros(20, dtype=np.int64))
    with pytest.raises(
        ValueError, match=r"bad.npz: expected 'x' of shape \(N, D\) and 'y' of shape \(N,\)"
    ):
        load_dataset({"npz": str(bad)})
    np.savez(bad, x=np.zeros((20, 3)), y=np.zeros(20))
    with pytest.raises(
        ValueError, match=r"bad.npz: expected numeric 'x' and integer 'y', got float64 and float64"
    ):
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
