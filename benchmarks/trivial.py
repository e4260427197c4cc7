"""A trainer that does no training: each epoch returns at once with a score that is a
fixed function of its one hyperparameter `x`. Overhead benchmarks use it so that what is
measured is the system (claims, reports, checkpoints, the database), not the model.

`model: "benchmarks.trivial:build"` (with the repository root on the workers' path).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from gridless.worker.data import Dataset
from gridless.worker.trainer import EpochMetrics


def score(x: float) -> float:
    """The 'validation accuracy' of parameter x: best at x = 0.3."""
    return max(0.0, 1.0 - abs(x - 0.3))


class Trivial:
    checkpoint_suffix = "npz"

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.x = float(params.get("x", 0.5))

    def train_epoch(self) -> EpochMetrics:
        s = score(self.x)
        return EpochMetrics(
            train_loss=1.0 - s,
            train_accuracy=s,
            val_loss=1.0 - s,
            val_accuracy=s,
            seconds=0.0,
            diverged=False,
            stats={},
        )

    def write_checkpoint(self, handle: BinaryIO, meta: Mapping[str, Any]) -> None:
        blob = np.frombuffer(json.dumps(dict(meta)).encode(), dtype=np.uint8)
        np.savez(handle, allow_pickle=False, x=np.array([self.x]), __meta__=blob)

    def load_checkpoint(self, path: Path) -> dict[str, Any]:
        with np.load(path, allow_pickle=False) as data:
            self.x = float(data["x"][0])
            meta: dict[str, Any] = json.loads(bytes(data["__meta__"]))
        return meta


def build(data: Dataset, params: Mapping[str, Any], seed: int) -> Trivial:
    """The factory named in the spec (the data set is ignored)."""
    return Trivial(params)
