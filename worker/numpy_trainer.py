"""The NumPy trainer: minibatch updates from the registry, schedules, EMA weights, L-BFGS."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from gridless.common.checkpoint_files import npz_writer, read_npz
from gridless.worker.data import Dataset
from gridless.worker.models import ConvNet, FullyConnectedNet, NumpyModel
from gridless.worker.optim import get_update_rule, momentum_at
from gridless.worker.schedules import PlateauTracker, learning_rate_at
from gridless.worker.training import (
    EpochMetrics,
    chance_stats,
    check_loss_fits,
    diverging,
    first_layer_snapshot,
    regression_metrics,
    resolve_hyperparams,
)

__all__ = ["NumpyTrainer", "build_numpy_model"]


def build_numpy_model(
    kind: str, data: Dataset, hp: Mapping[str, Any], rng: np.random.Generator
) -> NumpyModel:
    """The NumPy model a trial trains ("mlp" or "convnet") for a data set.

    Raises:
        ValueError: for a loss that does not fit the targets, or a convnet on flat data.
    """
    check_loss_fits(str(hp["loss"]), data)
    if kind == "mlp":
        return FullyConnectedNet(
            data.num_features,
            [int(hp["hidden"])] * int(hp["layers"]),
            data.num_outputs,
            reg=float(hp["reg"]),
            rng=rng,
            dropout=float(hp["dropout"]),
            batchnorm=bool(hp["batchnorm"]),
            init=str(hp["init"]),
            loss=str(hp["loss"]),
        )
    if data.image_shape is None:
        raise ValueError(f"model convnet needs image data; {data.name} has flat features")
    return ConvNet(
        data.image_shape,
        data.num_outputs,
        filters=int(hp["filters"]),
        hidden=int(hp["hidden"]),
        reg=float(hp["reg"]),
        rng=rng,
        init=str(hp["init"]),
        loss=str(hp["loss"]),
    )


def _accuracy(model: NumpyModel, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(model.predict(x) == y))


def _evaluate(
    model: NumpyModel, data: Dataset, val_scores: np.ndarray, *, finite: bool
) -> tuple[float | None, float | None, dict[str, float]]:
    """Training and validation accuracy (classification; 0 for non-finite weights), or
    None for both and RMSE and R² in the metrics (regression)."""
    if data.is_regression:
        return (
            None,
            None,
            {
                **regression_metrics(model.scores(data.x_train), data.y_train, "train"),
                **regression_metrics(val_scores, data.y_val, "val"),
            },
        )
    if not finite:
        return 0.0, 0.0, {}
    val_acc = float(np.mean(np.argmax(val_scores, axis=1) == data.y_val))
    return _accuracy(model, data.x_train, data.y_train), val_acc, {}


class NumpyTrainer:
    """Trains a NumPy model epoch by epoch.

    Per epoch: the learning rate from the schedule (and the momentum from its schedule),
    minibatch updates with the chosen rule (or full-batch L-BFGS), the update:weight
    ratio per parameter array, activation statistics on the first batch, and evaluation
    of both the raw weights and their running average (`ema` > 0).
    """

    checkpoint_suffix = "npz"

    def __init__(
        self, data: Dataset, params: Mapping[str, Any], *, seed: int, kind: str = "mlp"
    ) -> None:
        self.hp = resolve_hyperparams(params)
        self.data = data
        self.rng = np.random.default_rng(seed)
        self.model = build_numpy_model(kind, data, self.hp, self.rng)
        self.lbfgs = self.hp["update"] == "lbfgs"
        self.update = None if self.lbfgs else get_update_rule(str(self.hp["update"]))
        self.optim_state: dict[str, dict[str, Any]] = {k: {} for k in self.model.params}
        self.ema_decay = float(self.hp["ema"])
        self.ema = {k: v.copy() for k, v in self.model.params.items()} if self.ema_decay else {}
        self.plateau = PlateauTracker(patience=int(self.hp["lr_patience"]))
        self.epoch = 0
        self.first_loss: float | None = None

    # -- training ----------------------------------------------------------------------

    def _epoch_hp(self) -> dict[str, Any]:
        hp = dict(self.hp)
        hp["learning_rate"] = learning_rate_at(self.hp, self.epoch, self.plateau.drops)
        hp["momentum"] = momentum_at(self.hp, self.epoch)
        return hp

    def _minibatch_epoch(
        self, hp: Mapping[str, Any]
    ) -> tuple[list[float], dict[str, float], bool]:
        assert self.update is not None
        x, y = self.data.x_train, self.data.y_train
        batch = int(hp["batch_size"])
        order = self.rng.permutation(x.shape[0])
        losses: list[float] = []
        ratios: dict[str, list[float]] = {k: [] for k in self.model.params}
        for start in range(0, x.shape[0], batch):
            idx = order[start : start + batch]
            seed = int(self.rng.integers(2**31))
            loss, grads = self.model.loss(x[idx], y[idx], seed=seed, record=start == 0)
            losses.append(loss)
            if self.first_loss is None:
                self.first_loss = loss
            if diverging(loss, self.first_loss):
                return losses, {}, True
            for name, w in self.model.params.items():
                new = self.update(w, grads[name], self.optim_state[name], hp)
                # the seed's ratio: norm of the update over norm of the weights (~1e-3)
                w_norm = float(np.linalg.norm(w))
                ratios[name].append(float(np.linalg.norm(new - w)) / w_norm if w_norm else 0.0)
                self.model.params[name] = new
            self._update_ema()
        return losses, {k: float(np.mean(v)) for k, v in ratios.items() if v}, False

    def _lbfgs_epoch(self) -> tuple[list[float], dict[str, float], bool]:
        from scipy.optimize import minimize

        names = list(self.model.params)
        shapes = [self.model.params[k].shape for k in names]
        sizes = [int(np.prod(s)) for s in shapes]
        x, y = self.data.x_train, self.data.y_train
        losses: list[float] = []

        def unpack(flat: np.ndarray) -> None:
            offset = 0
            for name, shape, size in zip(names, shapes, sizes, strict=True):
                self.model.params[name] = flat[offset : offset + size].reshape(shape).copy()
                offset += size

        def objective(flat: np.ndarray) -> tuple[float, np.ndarray]:
            unpack(flat)
            loss, grads = self.model.loss(x, y, seed=0, record=not losses)
            losses.append(loss)
            return loss, np.concatenate([grads[k].ravel() for k in names])

        before = {k: v.copy() for k, v in self.model.params.items()}
        start = np.concatenate([self.model.params[k].ravel() for k in names])
        result = minimize(
            objective,
            start,
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": int(self.hp["lbfgs_iters"])},
        )
        unpack(result.x)
        self._update_ema()
        if self.first_loss is None and losses:
            self.first_loss = losses[0]
        ratios = {
            k: float(
                np.linalg.norm(self.model.params[k] - before[k])
                / (np.linalg.norm(before[k]) or 1.0)
            )
            for k in names
        }
        return losses, ratios, any(diverging(v, self.first_loss) for v in losses)

    def _update_ema(self) -> None:
        if self.ema_decay:
            d = self.ema_decay
            for k, v in self.model.params.items():
                self.ema[k] = d * self.ema[k] + (1 - d) * v

    def train_epoch(self) -> EpochMetrics:
        """One pass over the training split (or one L-BFGS run), then evaluation."""
        start = time.perf_counter()
        hp = self._epoch_hp()
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            initial = None
            if self.epoch == 0:  # the seed's chance check is on the data loss alone
                head = slice(0, int(self.hp["batch_size"]))
                scores = self.model.scores(self.data.x_train[head])
                initial = float(self.model.data_loss(scores, self.data.y_train[head])[0])
            if self.lbfgs:
                losses, ratios, diverged = self._lbfgs_epoch()
            else:
                losses, ratios, diverged = self._minibatch_epoch(hp)
            finite = all(np.isfinite(w).all() for w in self.model.params.values())
            d, model = self.data, self.model
            # the data loss alone: the L2 penalty is a training device, not a validation score
            val_scores = model.scores(d.x_val)
            val_loss = model.data_loss(val_scores, d.y_val)[0]
            train_acc, val_acc, metrics = _evaluate(model, d, val_scores, finite=finite)
            stats: dict[str, Any] = {
                "loss_history": [float(v) for v in losses],
                "update_ratio": ratios,
                "layers": list(model.layer_stats),
                "learning_rate": float(hp["learning_rate"]),
                "momentum": float(hp["momentum"]),
                **chance_stats(d, str(self.hp["loss"])),
            }
            snapshot = first_layer_snapshot(
                model.params["W1"], d.image_shape, units_first=model.params["W1"].ndim == 4
            )
            if snapshot is not None:
                stats["first_layer"] = snapshot
            if self.ema_decay and finite:
                key = "ema_val_r2" if d.is_regression else "ema_val_accuracy"
                stats[key] = self._ema_score()
            if initial is not None:
                stats["initial_data_loss"] = initial
        train_loss = float(np.mean(losses)) if losses else float("nan")
        diverged = diverged or not finite or diverging(train_loss, self.first_loss)
        self.epoch += 1
        if self.hp["schedule"] == "plateau":
            # R² ranks epochs as the validation loss does, higher being better
            self.plateau.step(metrics["val_r2"] if val_acc is None else val_acc)
        return EpochMetrics(
            train_loss=train_loss,
            train_accuracy=train_acc,
            val_loss=float(val_loss),
            val_accuracy=val_acc,
            seconds=time.perf_counter() - start,
            diverged=diverged,
            stats=stats,
            metrics=metrics,
        )

    def predict_proba(self, x: np.ndarray, *, ema: bool = False) -> np.ndarray:
        """Class probabilities (N, C): softmax of the scores, with the raw weights or their
        running average.

        Raises:
            ValueError: for a regression model, or `ema` without a running average.
        """
        if self.data.is_regression:
            raise ValueError("a regression model (loss mse) has no class probabilities")
        raw = self.model.params
        if ema:
            if not self.ema:
                raise ValueError("no running average of the weights: train with ema > 0")
            self.model.params = self.ema
        try:
            scores = self.model.scores(x)
        finally:
            self.model.params = raw
        shifted = scores - scores.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        return np.asarray(exp / exp.sum(axis=1, keepdims=True))

    def _ema_score(self) -> float:
        """Validation accuracy (or R² for regression) of the running average."""
        raw = self.model.params
        self.model.params = self.ema
        try:
            d = self.data
            if d.is_regression:
                return regression_metrics(self.model.scores(d.x_val), d.y_val, "val")["val_r2"]
            return _accuracy(self.model, d.x_val, d.y_val)
        finally:
            self.model.params = raw

    # -- checkpoints ---------------------------------------------------------------------

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Weights, buffers, EMA weights and optimizer state as plain arrays (no pickle)."""
        arrays = {f"param/{k}": v for k, v in self.model.params.items()}
        arrays.update({f"buffer/{k}": v for k, v in self.model.buffers.items()})
        arrays.update({f"ema/{k}": v for k, v in self.ema.items()})
        for name, state in self.optim_state.items():
            for key, value in state.items():
                arrays[f"optim/{name}/{key}"] = np.asarray(value)
        arrays["trainer/epoch"] = np.asarray(self.epoch)
        arrays["trainer/plateau"] = np.asarray(
            [self.plateau.best, self.plateau.stale, self.plateau.drops], dtype=np.float64
        )
        return arrays

    def load_state_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Restore what `state_arrays` returned."""
        for key, value in arrays.items():
            kind, _, rest = key.partition("/")
            if kind == "param":
                self.model.params[rest] = np.array(value)
            elif kind == "buffer":
                self.model.buffers[rest] = np.array(value)
            elif kind == "ema":
                self.ema[rest] = np.array(value)
            elif kind == "optim":
                name, _, slot = rest.partition("/")
                self.optim_state[name][slot] = np.array(value)
            elif key == "trainer/epoch":
                self.epoch = int(value)
            elif key == "trainer/plateau":
                best, stale, drops = (float(v) for v in value)
                self.plateau = PlateauTracker(
                    patience=self.plateau.patience, best=best, stale=int(stale), drops=int(drops)
                )

    def write_checkpoint(self, handle: BinaryIO, meta: Mapping[str, Any]) -> None:
        """An `.npz` of `state_arrays()` plus the JSON metadata, written without pickle."""
        npz_writer(self.state_arrays(), meta)(handle)

    def load_checkpoint(self, path: Path) -> dict[str, Any]:
        """Restore from a checkpoint file; returns its metadata."""
        arrays, meta = read_npz(path)
        self.load_state_arrays(arrays)
        return meta or {}
