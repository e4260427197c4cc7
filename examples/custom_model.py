"""A custom model for gridless: logistic regression (softmax on the raw features).

Use it with `model: "custom_model:build"` (see examples/custom.yaml) and this folder
on the workers' Python path (`gridless run` adds the directory it is started from).

The factory receives the data set, the trial's hyperparameters and a seed, and returns
an object following the trainer protocol of docs/trainers.md: `checkpoint_suffix`,
`train_epoch()`, `write_checkpoint(handle, meta)` and `load_checkpoint(path)`.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from gridless.worker.data import Dataset
from gridless.worker.layers import softmax_loss
from gridless.worker.trainer import EpochMetrics


class SoftmaxRegression:
    """Full-batch gradient descent on a linear softmax classifier."""

    checkpoint_suffix = "npz"

    def __init__(self, data: Dataset, params: Mapping[str, Any], seed: int) -> None:
        unknown = set(params) - {"learning_rate", "reg"}
        if unknown:
            raise ValueError(f"custom_model: unknown hyperparameters {sorted(unknown)}")
        self.data = data
        self.lr = float(params.get("learning_rate", 0.5))
        self.reg = float(params.get("reg", 1e-4))
        rng = np.random.default_rng(seed)
        self.w = 0.01 * rng.standard_normal((data.num_features, data.num_classes))

    def _loss(self, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        loss, dscores = softmax_loss(x @ self.w, y)
        return loss + 0.5 * self.reg * float(np.sum(self.w**2)), x.T @ dscores + self.reg * self.w

    def train_epoch(self) -> EpochMetrics:
        start = time.perf_counter()
        d = self.data
        losses = []
        for _ in range(10):
            loss, grad = self._loss(d.x_train, d.y_train)
            losses.append(loss)
            self.w -= self.lr * grad
        val_loss, _ = self._loss(d.x_val, d.y_val)
        return EpochMetrics(
            train_loss=float(np.mean(losses)),
            train_accuracy=float(np.mean((d.x_train @ self.w).argmax(1) == d.y_train)),
            val_loss=val_loss,
            val_accuracy=float(np.mean((d.x_val @ self.w).argmax(1) == d.y_val)),
            seconds=time.perf_counter() - start,
            diverged=not np.isfinite(losses[-1]),
            stats={"loss_history": losses},
        )

    def write_checkpoint(self, handle: BinaryIO, meta: Mapping[str, Any]) -> None:
        buffer = io.BytesIO()
        blob = np.frombuffer(json.dumps(dict(meta)).encode(), dtype=np.uint8)
        np.savez(buffer, allow_pickle=False, w=self.w, __meta__=blob)
        handle.write(buffer.getvalue())

    def load_checkpoint(self, path: Path) -> dict[str, Any]:
        with np.load(path, allow_pickle=False) as data:
            self.w = data["w"]
            meta: dict[str, Any] = json.loads(bytes(data["__meta__"]))
        return meta


def build(data: Dataset, params: Mapping[str, Any], seed: int) -> SoftmaxRegression:
    """The factory named in the spec."""
    return SoftmaxRegression(data, params, seed)
