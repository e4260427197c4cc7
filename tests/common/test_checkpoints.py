"""Checkpoint names (a round-trip table) and the store's atomic, pickle-free writes."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from gridless.common.checkpoints import CheckpointName, LocalStore, format_name, parse_name
from gridless.common.errors import NotFoundError, StorageError


@pytest.mark.parametrize(
    ("score", "epoch", "metric", "name"),
    [
        (0.97314, 12, "val_accuracy", "val0.9731_ep012.npz"),
        (0.0, 0, "val_accuracy", "val0.0000_ep000.npz"),
        (1.0, 999, "val_accuracy", "val1.0000_ep999.npz"),
        (0.5, 1000, "val_accuracy", "val0.5000_ep1000.npz"),
        (2.302585, 1, "val_loss", "loss0002.3026_ep001.npz"),
        (1234.5, 7, "val_loss", "loss1234.5000_ep007.npz"),
    ],
)
def test_format_and_parse_round_trip(score: float, epoch: int, metric: str, name: str) -> None:
    assert format_name(score, epoch, metric=metric) == name
    assert parse_name(name) == CheckpointName(round(score, 4), epoch, metric)


@pytest.mark.parametrize(
    ("score", "epoch", "metric", "name", "tag"),
    [
        (0.93124, 12, "val_r2", "r2_0000.9312_ep012.pt", "r2"),
        (-0.12, 3, "val_r2", "r2_-0000.1200_ep003.pt", "r2"),
        (-1234.5, 3, "val_r2", "r2_-1234.5000_ep003.pt", "r2"),
        (0.0, 1, "val_rmse", "rmse_0000.0000_ep001.pt", "rmse"),
        (123456.78, 1, "val_rmse", "rmse_123456.7800_ep001.pt", "rmse"),
        (0.81, 20, "f1_macro", "f1-macro_0000.8100_ep020.pt", "f1-macro"),
    ],
)
def test_any_metric_names_its_checkpoints(
    score: float, epoch: int, metric: str, name: str, tag: str
) -> None:
    """The chosen metric, any sign and size, round-trips through the name."""
    assert format_name(score, epoch, metric=metric, suffix="pt") == name
    assert parse_name(name) == CheckpointName(round(score, 4), epoch, tag, "pt")


def test_signed_scores_sort_with_a_general_numeric_sort() -> None:
    names = [format_name(v, 1, metric="val_r2") for v in (0.5, -0.25, 0.9, -3.0, 0.0)]
    ranked = sorted(names, key=lambda n: float(n.split("_")[1]), reverse=True)
    assert [parse_name(n).score for n in ranked] == [0.9, 0.5, 0.0, -0.25, -3.0]
    positives = [n for n in names if parse_name(n).score >= 0]
    assert sorted(positives) == sorted(positives, key=lambda n: parse_name(n).score)


@pytest.mark.parametrize(
    ("score", "epoch", "metric"),
    [
        (-0.1, 1, "val_accuracy"),
        (1.01, 1, "val_accuracy"),
        (float("nan"), 1, "val_accuracy"),
        (0.5, -1, "val_accuracy"),
        (0.5, 1_000_000, "val_accuracy"),
        (1e4, 1, "val_loss"),
        (float("inf"), 1, "val_loss"),
        (float("nan"), 1, "val_r2"),
        (0.5, 1, "val_"),
    ],
)
def test_format_refuses_out_of_range(score: float, epoch: int, metric: str) -> None:
    with pytest.raises(ValueError, match=r"must be|does not make"):
        format_name(score, epoch, metric=metric)


@pytest.mark.parametrize(
    "name",
    [
        "val0.97_ep012.npz",
        "val0.9731_ep12.npz",
        "x.npz",
        "../val0.9731_ep012.npz",
        "val0.9731_ep012.npz.tmp",
    ],
)
def test_parse_refuses_other_names(name: str) -> None:
    with pytest.raises(ValueError, match="not a checkpoint file name"):
        parse_name(name)


def test_names_sort_by_score() -> None:
    accuracies = [0.05, 0.5, 0.9731, 0.9732, 1.0]
    names = [format_name(s, 1) for s in accuracies]
    assert sorted(names, reverse=True) == names[::-1]
    losses = [0.01, 2.3, 9.99, 10.0, 123.4, 9999.0]
    loss_names = [format_name(s, 1, metric="val_loss") for s in losses]
    assert sorted(loss_names) == loss_names


def test_write_is_atomic_hashed_and_loads_without_pickle(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    arrays = {"param/W1": np.arange(6.0).reshape(2, 3), "param/b1": np.zeros(3)}
    written = store.write("s", "000001", score=0.9, epoch=3, arrays=arrays, meta={"lr": 0.1})
    assert written.relpath == "s/000001/val0.9000_ep003.npz"
    path = tmp_path / written.relpath
    assert written.size == path.stat().st_size
    assert written.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert os.listdir(path.parent) == ["val0.9000_ep003.npz"]  # no temporary file left
    loaded, meta = store.read(written.relpath)
    assert meta == {"lr": 0.1}
    np.testing.assert_array_equal(loaded["param/W1"], arrays["param/W1"])
    with np.load(path, allow_pickle=False) as data:  # readable by plain NumPy, no pickle
        assert set(data.files) == {"param/W1", "param/b1", "__meta__"}


def test_disk_full_mid_write_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def half_write(handle: object, **_arrays: object) -> None:
        handle.write(b"PK\x03\x04 partial")  # type: ignore[attr-defined]
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("gridless.common.checkpoints.np.savez", half_write)
    store = LocalStore(tmp_path)
    with pytest.raises(StorageError, match="No space left on device"):
        store.write("s", "000001", score=0.5, epoch=1, arrays={"a": np.zeros(1)}, meta={})
    assert os.listdir(tmp_path / "s" / "000001") == []


@pytest.mark.parametrize(
    ("arrays", "meta", "message"),
    [
        ({"a": np.array([object()])}, {}, "dtype object"),
        ({"__meta__": np.zeros(1)}, {}, "reserved"),
        ({"a": np.zeros(1)}, {"x": float("nan")}, "not JSON compliant"),
    ],
)
def test_unsafe_payloads_are_refused(
    tmp_path: Path, arrays: dict, meta: dict, message: str
) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValueError, match=message):
        LocalStore(tmp_path).write("s", "000001", score=0.5, epoch=1, arrays=arrays, meta=meta)
    assert list(tmp_path.rglob("*.npz")) == []


@pytest.mark.parametrize(
    "relpath", ["../outside.npz", "/etc/passwd", "s/../../outside.npz", "s/000001/missing.npz"]
)
def test_resolve_refuses_paths_outside_or_missing(tmp_path: Path, relpath: str) -> None:
    (tmp_path / "outside.npz").write_bytes(b"x")
    store = LocalStore(tmp_path / "store")
    (tmp_path / "store" / "s" / "000001").mkdir(parents=True)
    with pytest.raises(NotFoundError):
        store.resolve(relpath)


def test_resolve_refuses_symlink_out_of_store(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("x")
    store = LocalStore(tmp_path / "store")
    folder = tmp_path / "store" / "s" / "000001"
    folder.mkdir(parents=True)
    (folder / "val0.9000_ep001.npz").symlink_to(tmp_path / "secret")
    with pytest.raises(NotFoundError):
        store.resolve("s/000001/val0.9000_ep001.npz")


@pytest.mark.parametrize(
    ("study", "trial"), [("..", "1"), ("s", ".."), ("a/b", "1"), ("", "1"), (".hidden", "1")]
)
def test_unsafe_store_parts_are_refused(tmp_path: Path, study: str, trial: str) -> None:
    with pytest.raises(ValueError, match="unsafe"):
        LocalStore(tmp_path).trial_dir(study, trial)
