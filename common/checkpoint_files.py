"""The checkpoint file format, in one place: what a checkpoint file holds and how
its digest is taken.

An `.npz` holds plain arrays and the JSON metadata as the uint8 array `__meta__`, written
and read with `allow_pickle=False`. A `.pt` holds named fields (state dicts, numbers) and
the JSON metadata as the string field `meta`, loaded with `weights_only=True`. The
trainers, a user's `trial.save`, the store and the master's checkpoint browser all write
and read through these functions; names and folders live in `common/checkpoints.py`.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any, BinaryIO

import numpy as np

__all__ = [
    "NPZ_META",
    "PT_META",
    "digest_file",
    "digest_stream",
    "encode_meta",
    "npz_writer",
    "pt_writer",
    "read_npz",
    "read_pt",
]

NPZ_META = "__meta__"  # the array that carries an .npz checkpoint's JSON metadata
PT_META = "meta"  # the field that carries a .pt checkpoint's JSON metadata
_CHUNK = 1 << 20


def encode_meta(meta: Mapping[str, Any]) -> str:
    """A checkpoint's metadata as JSON: keys sorted, no NaN or inf tokens.

    Raises:
        ValueError: for a non-finite number (JSON has none).
    """
    return json.dumps(dict(meta), allow_nan=False, sort_keys=True)


def npz_writer(arrays: Mapping[str, Any], meta: Mapping[str, Any]) -> Callable[[BinaryIO], None]:
    """A writer of an `.npz` of `arrays` plus the JSON `__meta__`; checked before any byte.

    Raises:
        ValueError: for an array named `__meta__`, an object array (it would need pickle),
            or metadata that is not JSON.
    """
    payload = {key: np.asarray(value) for key, value in arrays.items()}
    if NPZ_META in payload:
        raise ValueError(f"array name {NPZ_META!r} is reserved")
    for key, value in payload.items():
        if value.dtype.hasobject:  # would be pickled; checkpoints never hold pickles
            raise ValueError(f"array {key!r} has dtype object; checkpoints hold plain arrays")
    payload[NPZ_META] = np.frombuffer(encode_meta(meta).encode("utf-8"), dtype=np.uint8)

    def write(handle: BinaryIO) -> None:
        buffer = io.BytesIO()  # zip needs to seek; the handle may not
        np.savez(buffer, allow_pickle=False, **payload)
        handle.write(buffer.getvalue())

    return write


def pt_writer(fields: Mapping[str, Any], meta: Mapping[str, Any]) -> Callable[[BinaryIO], None]:
    """A writer of a `.pt` of `fields` plus the JSON `meta` field (torch is imported here).

    Raises:
        ValueError: for a field named `meta`, or metadata that is not JSON.
    """
    if PT_META in fields:
        raise ValueError(f"field name {PT_META!r} is reserved")
    state = {**fields, PT_META: encode_meta(meta)}

    def write(handle: BinaryIO) -> None:
        import torch

        buffer = io.BytesIO()
        torch.save(state, buffer)
        handle.write(buffer.getvalue())

    return write


def read_npz(file: str | Path | IO[bytes]) -> tuple[dict[str, np.ndarray], dict[str, Any] | None]:
    """An `.npz` checkpoint's arrays and metadata (None without `__meta__`), never unpickling.

    Raises:
        ValueError, OSError, EOFError, UnicodeDecodeError: for a file that is not a plain
            `.npz` (a pickle, garbage).
    """
    with np.load(file, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files if key != NPZ_META}
        meta = (
            json.loads(bytes(data[NPZ_META]).decode("utf-8")) if NPZ_META in data.files else None
        )
    return arrays, meta


def read_pt(
    file: str | Path | IO[bytes], *, map_location: str = "cpu"
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A `.pt` checkpoint's fields and metadata (None without `meta`), `weights_only=True`.

    Raises:
        Exception: torch's own refusals (UnpicklingError, RuntimeError) for a file that is
            not a plain weights file.
    """
    import torch

    state = torch.load(file, weights_only=True, map_location=map_location)
    if not isinstance(state, dict):
        return {"state": state}, None
    fields = {key: value for key, value in state.items() if key != PT_META}
    meta = json.loads(state[PT_META]) if PT_META in state else None
    return fields, meta


def digest_stream(handle: IO[bytes]) -> tuple[int, str]:
    """(size, SHA-256 hex) of what is left in `handle`, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    size = 0
    for chunk in iter(lambda: handle.read(_CHUNK), b""):
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


def digest_file(path: str | Path) -> tuple[int, str]:
    """(size, SHA-256 hex) of a file: what the master records beside a checkpoint."""
    with Path(path).open("rb") as handle:
        return digest_stream(handle)
