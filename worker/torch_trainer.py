"""The Torch trainer: the NumPy models' twins, trained with torch.optim.

Learning rates come from the pure schedules of worker/schedules.py, as in the NumPy
trainer. Same model names (`mlp`, `convnet`), hyperparameter names, metrics
and checkpoint protocol as `worker.numpy_trainer`. Checkpoints are `.pt` files holding
only tensors, numbers and strings, so they load with `torch.load(path, weights_only=True)`.

A trainer trains on one device, the trial's: the model, its running average
and the data live there, and the epoch's statistics stay there until it ends
(`worker.torch_stats`). NumPy models are CPU models.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim import swa_utils

from gridless.common.checkpoint_files import pt_writer, read_pt
from gridless.worker.data import Dataset
from gridless.worker.schedules import PlateauTracker, learning_rate_at
from gridless.worker.torch_stats import EpochStats, step_norms, to_host
from gridless.worker.training import (
    EpochMetrics,
    chance_stats,
    check_loss_fits,
    diverging,
    first_layer_snapshot,
    regression_metrics,
    resolve_hyperparams,
)

__all__ = ["TorchTrainer", "build_torch_model", "make_optimizer"]


def _init_linear(layer: nn.Module, scheme: str, fan_in: int) -> None:
    assert isinstance(layer, nn.Linear | nn.Conv2d)
    std = {"he": math.sqrt(2.0 / fan_in), "xavier": math.sqrt(1.0 / fan_in), "naive": 0.01}
    if scheme not in std:
        raise ValueError(f"unknown init {scheme!r}; valid: {', '.join(sorted(std))}")
    with torch.no_grad():
        layer.weight.normal_(0.0, std[scheme])
        assert layer.bias is not None
        layer.bias.zero_()


def build_torch_model(kind: str, data: Dataset, hp: Mapping[str, Any]) -> nn.Module:
    """The Torch twin of `worker.numpy_trainer.build_numpy_model`.

    Raises:
        ValueError: for a loss that does not fit the targets, or a convnet on flat data.
    """
    check_loss_fits(str(hp["loss"]), data)
    modules: list[nn.Module] = []
    if kind == "mlp":
        dims = [data.num_features, *[int(hp["hidden"])] * int(hp["layers"])]
        for fan_in, fan_out in itertools.pairwise(dims):
            linear = nn.Linear(fan_in, fan_out)
            _init_linear(linear, str(hp["init"]), fan_in)
            modules.append(linear)
            if hp["batchnorm"]:
                modules.append(nn.BatchNorm1d(fan_out, momentum=0.1, eps=1e-5))
            modules.append(nn.ReLU())
            if float(hp["dropout"]) > 0:
                modules.append(nn.Dropout(float(hp["dropout"])))
        head = nn.Linear(dims[-1], data.num_outputs)
        _init_linear(head, str(hp["init"]), dims[-1])
        return nn.Sequential(*modules, head)
    if data.image_shape is None:
        raise ValueError(f"model convnet needs image data; {data.name} has flat features")
    c, h, w = data.image_shape
    filters, hidden = int(hp["filters"]), int(hp["hidden"])
    conv = nn.Conv2d(c, filters, 3, padding=1)
    fc1 = nn.Linear(filters * (h // 2) * (w // 2), hidden)
    fc2 = nn.Linear(hidden, data.num_outputs)
    for layer, fan_in in ((conv, c * 9), (fc1, fc1.in_features), (fc2, hidden)):
        _init_linear(layer, str(hp["init"]), fan_in)
    return nn.Sequential(
        nn.Unflatten(1, (c, h, w)),
        conv,
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        fc1,
        nn.ReLU(),
        fc2,
    )


def make_optimizer(
    name: str, params: list[dict[str, Any]], hp: Mapping[str, Any]
) -> torch.optim.Optimizer:
    """The torch.optim optimizer matching a NumPy update rule of the same name."""
    lr = float(hp["learning_rate"])
    eps = float(hp["eps"])
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if name in ("momentum", "nesterov"):
        return torch.optim.SGD(
            params, lr=lr, momentum=float(hp["momentum"]), nesterov=name == "nesterov"
        )
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, eps=eps)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=float(hp["decay_rate"]), eps=eps)
    if name == "adam":
        return torch.optim.Adam(
            params, lr=lr, betas=(float(hp["beta1"]), float(hp["beta2"])), eps=eps
        )
    if name == "lbfgs":
        return torch.optim.LBFGS(params, lr=1.0, max_iter=int(hp["lbfgs_iters"]))
    raise ValueError(f"unknown update rule {name!r}")


def _fork_rng(device: torch.device) -> contextlib.AbstractContextManager[None]:
    """Fork the CPU generator, and the GPU's when training on one (dropout draws from the
    device's generator), so seeding a trial leaves the process's generators as they were."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return torch.random.fork_rng(devices=[index])
    return torch.random.fork_rng(devices=[])


def _on_cpu(state: Any) -> Any:
    """A state dict with its tensors on the CPU: a checkpoint written on a GPU then loads
    on any machine, the master's included, without a `map_location`."""
    if isinstance(state, torch.Tensor):
        return state.cpu()
    if isinstance(state, dict):
        moved = copy.copy(state)  # the same mapping type, with a module's `_metadata`
        for key, value in state.items():
            moved[key] = _on_cpu(value)
        return moved
    if isinstance(state, list):
        return [_on_cpu(value) for value in state]
    return state


class TorchTrainer:
    """Trains a Torch model epoch by epoch with the same protocol as `NumpyTrainer`.

    Args:
        device: where to train, `"cpu"` or `"cuda"` (the trial's device). The weights are
            initialised on the CPU and then moved, and the shuffling generator stays on
            the CPU, so a seed starts from the same weights and order on every device.
    """

    checkpoint_suffix = "pt"

    def __init__(
        self,
        data: Dataset,
        params: Mapping[str, Any],
        *,
        seed: int,
        kind: str = "mlp",
        device: str = "cpu",
    ) -> None:
        self.hp = resolve_hyperparams(params)
        self.data = data
        self.device = torch.device(device)
        self.generator = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.model = build_torch_model(kind, data, self.hp)
        self.model.to(self.device)
        self.x_train = torch.as_tensor(data.x_train, dtype=torch.float32, device=self.device)
        self.x_val = torch.as_tensor(data.x_val, dtype=torch.float32, device=self.device)
        # class labels stay int64; regression targets (N, k) are float32 like the scores
        target_dtype = torch.float32 if data.is_regression else None
        self.y_train = torch.as_tensor(data.y_train, dtype=target_dtype, device=self.device)
        self.y_val = torch.as_tensor(data.y_val, dtype=target_dtype, device=self.device)
        reg = float(self.hp["reg"])
        weights = [
            p for n, p in self.model.named_parameters() if n.endswith("weight") and p.dim() > 1
        ]
        others = [
            p
            for n, p in self.model.named_parameters()
            if not (n.endswith("weight") and p.dim() > 1)
        ]
        groups = [
            {"params": weights, "weight_decay": reg},
            {"params": others, "weight_decay": 0.0},
        ]
        self._weights = weights
        if self.hp["update"] == "lbfgs":
            # LBFGS takes one parameter group; its closure adds the L2 term itself.
            groups = [{"params": weights + others}]
        self.optimizer = make_optimizer(str(self.hp["update"]), groups, self.hp)
        # The rate of each epoch comes from the pure schedules the NumPy trainer uses
        # ; L-BFGS scales its own base rate of 1.
        self.base_lr = float(self.optimizer.param_groups[0]["lr"])
        self.plateau = PlateauTracker(patience=int(self.hp["lr_patience"]))
        # The copy lives on the model's device; its step counter stays a CPU tensor (no
        # `device=`), so reading it each step costs no wait for the GPU.
        self.ema = (
            swa_utils.AveragedModel(
                self.model,
                multi_avg_fn=swa_utils.get_ema_multi_avg_fn(float(self.hp["ema"])),
            )
            if float(self.hp["ema"]) > 0
            else None
        )
        self.epoch = 0
        self.first_loss: float | None = None
        self.num_classes = data.num_classes

    def _loss(self, scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.hp["loss"] == "mse":
            return F.mse_loss(scores, y)  # the mean over every entry, as layers.mse_loss
        if self.hp["loss"] == "svm":
            # torch divides the Weston-Watkins sum by C; ours (and the seed's) does not.
            return F.multi_margin_loss(scores, y, margin=1.0) * self.num_classes
        return F.cross_entropy(scores, y)

    def _reg_loss(self) -> torch.Tensor:
        reg = float(self.hp["reg"])
        total = torch.zeros((), device=self.device)
        for p in self._weights:
            total = total + (p * p).sum()
        return 0.5 * reg * total

    def _record_losses(self, history: list[float], losses: list[float]) -> bool:
        """Append step losses to `history` up to the first diverging one; True if one does.

        The trial's first step loss becomes `first_loss`, what later losses are judged by.
        """
        for value in losses:
            history.append(value)
            if self.first_loss is None:
                self.first_loss = value
            if diverging(value, self.first_loss):
                return True
        return False

    def _minibatch_epoch(
        self,
    ) -> tuple[list[float], dict[str, float], list[dict[str, float]], bool]:
        """One shuffled pass; a diverging loss ends it at the next check, reporting the
        losses up to that one and no update ratios."""
        n = self.x_train.shape[0]
        batch = int(self.hp["batch_size"])
        order = torch.randperm(n, generator=self.generator).to(self.device)
        stats = EpochStats(self.model)
        history: list[float] = []
        self.model.train()
        # batch norm cannot normalize a batch of one: a last batch that small is skipped
        end = n - 1 if self.hp["batchnorm"] and n % batch == 1 and n > 1 else n
        for start in range(0, end, batch):
            idx = order[start : start + batch]
            handles = stats.watch_layers(self.model) if start == 0 else []
            scores = self.model(self.x_train[idx])
            loss = self._loss(scores, self.y_train[idx])
            with torch.no_grad():
                total = loss.detach().double() + self._reg_loss().double()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            for h in handles:
                h.remove()
            before = [p.detach().clone() for p in self.model.parameters()]
            self.optimizer.step()
            stats.add_step(total, step_norms(before, list(self.model.parameters())))
            if self.ema is not None:
                self.ema.update_parameters(self.model)
            if stats.check_due() and self._record_losses(history, stats.pending_losses()):
                _, _, layers = stats.finish()
                return history, {}, layers, True
        losses, ratios, layers = stats.finish()
        diverged = self._record_losses(history, losses)
        return history, {} if diverged else ratios, layers, diverged

    def _lbfgs_epoch(self) -> tuple[list[float], dict[str, float], list[dict[str, float]], bool]:
        evaluations: list[torch.Tensor] = []
        self.model.train()

        def closure() -> torch.Tensor:
            self.optimizer.zero_grad(set_to_none=True)
            loss = self._loss(self.model(self.x_train), self.y_train) + self._reg_loss()
            loss.backward()
            evaluations.append(loss.detach())
            return loss

        self.optimizer.step(closure)  # type: ignore[arg-type]
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        losses = to_host(evaluations)
        if self.first_loss is None and losses:
            self.first_loss = losses[0]
        return losses, {}, [], any(diverging(v, self.first_loss) for v in losses)

    @torch.no_grad()
    def _evaluate(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, split: str
    ) -> tuple[float, float | None, dict[str, float]]:
        """The data loss (L2 is a training penalty) and the accuracy; for regression, no
        accuracy but RMSE and R² named after `split`."""
        model.eval()
        scores = model(x)
        loss = float(self._loss(scores, y))
        if self.data.is_regression:
            pred, target = scores.double().cpu().numpy(), y.double().cpu().numpy()
            return loss, None, regression_metrics(pred, target, split)
        return loss, float((scores.argmax(dim=1) == y).float().mean()), {}

    def train_epoch(self) -> EpochMetrics:
        """One pass over the training split (or one L-BFGS run), then evaluation."""
        start = time.perf_counter()
        lr = learning_rate_at(
            {**self.hp, "learning_rate": self.base_lr}, self.epoch, self.plateau.drops
        )
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        initial = None
        if self.epoch == 0:  # the seed's chance check is on the data loss alone
            batch = int(self.hp["batch_size"])
            head = (self.x_train[:batch], self.y_train[:batch])
            initial = self._evaluate(self.model, *head, "train")[0]
        with _fork_rng(self.device):  # dropout's draws, from the trial's own seed
            torch.manual_seed(int(torch.randint(2**31, (1,), generator=self.generator)))
            if self.hp["update"] == "lbfgs":
                losses, ratios, layers, diverged = self._lbfgs_epoch()
            else:
                losses, ratios, layers, diverged = self._minibatch_epoch()
        finite = bool(
            torch.stack([torch.isfinite(p).all() for p in self.model.parameters()]).all()
        )
        val_loss, val_acc, val_metrics = self._evaluate(self.model, self.x_val, self.y_val, "val")
        _, train_acc, metrics = self._evaluate(self.model, self.x_train, self.y_train, "train")
        metrics.update(val_metrics)
        if not finite and not self.data.is_regression:
            val_acc = train_acc = 0.0
        stats: dict[str, Any] = {
            "loss_history": losses,
            "update_ratio": ratios,
            "layers": layers,
            "learning_rate": lr,
            **chance_stats(self.data, str(self.hp["loss"])),
        }
        first = next(m for m in self.model.modules() if isinstance(m, nn.Linear | nn.Conv2d))
        snapshot = first_layer_snapshot(
            first.weight.detach().cpu().numpy(), self.data.image_shape, units_first=True
        )
        if snapshot is not None:
            stats["first_layer"] = snapshot
        if self.ema is not None and finite:
            _, ema_acc, ema_metrics = self._evaluate(self.ema, self.x_val, self.y_val, "val")
            if ema_acc is None:
                stats["ema_val_r2"] = ema_metrics["val_r2"]
            else:
                stats["ema_val_accuracy"] = ema_acc
        if initial is not None:
            stats["initial_data_loss"] = initial
        train_loss = float(np.mean(losses)) if losses else float("nan")
        self.epoch += 1
        if self.hp["schedule"] == "plateau":
            # R² ranks epochs as the validation loss does, higher being better
            self.plateau.step(metrics["val_r2"] if val_acc is None else val_acc)
        return EpochMetrics(
            train_loss=train_loss,
            train_accuracy=train_acc,
            val_loss=val_loss,
            val_accuracy=val_acc,
            seconds=time.perf_counter() - start,
            diverged=diverged or not finite or diverging(train_loss, self.first_loss),
            stats=stats,
            metrics=metrics,
        )

    @torch.no_grad()
    def predict_proba(self, x: np.ndarray, *, ema: bool = False) -> np.ndarray:
        """Class probabilities (N, C) from the raw weights or their running average.

        Raises:
            ValueError: for a regression model, or `ema` without a running average.
        """
        if self.data.is_regression:
            raise ValueError("a regression model (loss mse) has no class probabilities")
        if ema and self.ema is None:
            raise ValueError("no running average of the weights: train with ema > 0")
        model = self.ema if ema and self.ema is not None else self.model
        model.eval()
        scores = model(torch.as_tensor(x, dtype=torch.float32, device=self.device))
        return np.asarray(torch.softmax(scores, dim=1).cpu().numpy(), dtype=np.float64)

    def write_checkpoint(self, handle: BinaryIO, meta: Mapping[str, Any]) -> None:
        """A `.pt` file of state dicts and JSON metadata (tensors, numbers, strings only),
        its tensors on the CPU whatever the training device."""
        fields = {
            "model": _on_cpu(self.model.state_dict()),
            "optimizer": _on_cpu(self.optimizer.state_dict()),
            "scheduler": {  # the plateau schedule's count; the others need only the epoch
                "best": self.plateau.best,
                "stale": self.plateau.stale,
                "drops": self.plateau.drops,
            },
            "ema": _on_cpu(self.ema.state_dict()) if self.ema is not None else {},
            "epoch": self.epoch,
        }
        pt_writer(fields, meta)(handle)

    def load_checkpoint(self, path: Path) -> dict[str, Any]:
        """Restore from a `.pt` checkpoint, never unpickling arbitrary objects.

        Loaded onto the CPU: `load_state_dict` copies the weights to the training device
        and moves the optimizer's state there, except its step counters, which torch
        keeps on the CPU (a GPU counter would cost Adam a host sync per step).
        """
        state, meta = read_pt(path, map_location="cpu")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        plateau = state.get("scheduler") or {}
        if "drops" in plateau:
            self.plateau = PlateauTracker(
                patience=self.plateau.patience,
                best=float(plateau["best"]),
                stale=int(plateau["stale"]),
                drops=int(plateau["drops"]),
            )
        if self.ema is not None and state["ema"]:
            self.ema.load_state_dict(state["ema"])
        self.epoch = int(state["epoch"])
        return meta or {}
