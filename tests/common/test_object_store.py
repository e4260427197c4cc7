"""The checkpoint store on an S3-compatible object store (moto's server, started by the
tests) behaves like the local one: atomic writes, digests, listing, deletion, refusals."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pytest
import s3fs

from gridless.common.checkpoints import LocalStore, ObjectStore, open_store
from gridless.common.errors import NotFoundError, StorageError


@pytest.fixture
def store(s3_url: str) -> ObjectStore:
    opened = open_store(s3_url)
    assert isinstance(opened, ObjectStore)
    return opened


def _fs(s3_server: Any) -> Any:
    return s3fs.S3FileSystem(**s3_server.options, skip_instance_cache=True)


def test_open_store_picks_the_backend_from_the_location(s3_url: str, tmp_path: Any) -> None:
    assert isinstance(open_store(s3_url), ObjectStore)
    assert isinstance(open_store(tmp_path), LocalStore)
    assert isinstance(open_store(str(tmp_path)), LocalStore)
    local = open_store(f"file://{tmp_path}")
    assert isinstance(local, LocalStore)
    assert local.root == tmp_path.resolve()


def test_write_read_round_trip_with_size_and_digest(store: ObjectStore, s3_server: Any) -> None:
    arrays = {"W1": np.arange(12.0).reshape(3, 4), "b1": np.ones(4, dtype=np.float32)}
    written = store.write(
        "study", "000001", score=0.9731, epoch=12, arrays=arrays, meta={"lr": 0.1}
    )
    assert written.relpath == "study/000001/val0.9731_ep012.npz"
    raw = _fs(s3_server).cat_file(f"{store.root}/{written.relpath}")
    assert (len(raw), hashlib.sha256(raw).hexdigest()) == (written.size, written.sha256)
    loaded, meta = store.read(written.relpath)
    assert meta == {"lr": 0.1}
    np.testing.assert_array_equal(loaded["W1"], arrays["W1"])
    assert loaded["b1"].dtype == np.float32


def test_listing_sorts_names_and_deleting_removes_the_object(store: ObjectStore) -> None:
    for score, epoch in [(0.5, 1), (0.9, 2), (0.7, 3)]:
        store.write("s", "000002", score=score, epoch=epoch, arrays={"a": np.zeros(2)}, meta={})
    names = store.list_trial("s", "000002")
    assert names == ["val0.5000_ep001.npz", "val0.7000_ep003.npz", "val0.9000_ep002.npz"]
    store.delete("s/000002/val0.5000_ep001.npz")
    store.delete("s/000002/val0.5000_ep001.npz")  # twice: a missing object is no error
    assert store.list_trial("s", "000002") == names[1:]
    assert store.list_trial("s", "000099") == []
    with pytest.raises(NotFoundError):
        store.fetch("s/000002/val0.5000_ep001.npz")


def test_a_writer_failing_midway_leaves_no_object(store: ObjectStore, s3_server: Any) -> None:
    def half_then_fail(handle: Any) -> None:
        handle.write(b"PK\x03\x04" + b"x" * 1000)
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="killed mid-write"):
        store.write_with("s", "000003", score=0.8, epoch=1, writer=half_then_fail)
    assert store.list_trial("s", "000003") == []
    assert not _fs(s3_server).exists(f"{store.root}/s/000003")


@pytest.mark.parametrize(
    "relpath",
    [
        "../other/000001/val0.9000_ep001.npz",
        "s/../../000001/val0.9000_ep001.npz",
        "/etc/passwd",
        "s/000001/notes.txt",
        "s/000001",
        "s/000001/val0.9000_ep001.npz/extra",
    ],
)
def test_paths_that_are_not_a_checkpoint_of_the_store_are_not_found(
    store: ObjectStore, relpath: str
) -> None:
    with pytest.raises(NotFoundError):
        store.fetch(relpath)


def test_an_unreachable_object_store_is_a_storage_error(tmp_path: Any) -> None:
    from tests.net import free_port

    dead = ObjectStore(
        "s3://nowhere/runs",
        {
            "endpoint_url": f"http://127.0.0.1:{free_port()}",
            "key": "k",
            "secret": "s",
            "config_kwargs": {"connect_timeout": 1, "retries": {"max_attempts": 1}},
        },
    )
    with pytest.raises(StorageError, match="cannot upload checkpoint"):
        dead.write("s", "000001", score=0.5, epoch=1, arrays={"a": np.zeros(1)}, meta={})
