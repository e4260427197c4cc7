"""A Torch model as a gradient-check target: float64, parameters exposed as NumPy views."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["TorchTarget"]


class TorchTarget:
    """`params` are NumPy views sharing memory with the (float64) parameters, so nudging
    an entry nudges the model; every evaluation reseeds Torch's RNG (dropout)."""

    def __init__(
        self,
        model: nn.Module,
        x: np.ndarray,
        y: np.ndarray,
        *,
        reg: float,
        loss: str,
        seed: int = 0,
    ) -> None:
        self.model = model.double().train()
        self.x = torch.as_tensor(np.asarray(x, dtype=np.float64))
        self.y = torch.as_tensor(y)
        self.reg = reg
        self.loss_name = loss
        self.seed = seed
        named = dict(model.named_parameters())
        self._tensors = named
        self.params = {name: p.detach().numpy() for name, p in named.items()}
        self.weights = [n for n, p in named.items() if n.endswith("weight") and p.dim() > 1]
        self.output_weight = self.weights[-1]
        self.output_bias = self.output_weight.removesuffix("weight") + "bias"
        self.depth = len(self.weights)
        self.has_kinks = True

    def _data_loss(self, scores: torch.Tensor) -> torch.Tensor:
        if self.loss_name == "mse":
            return F.mse_loss(scores, self.y)
        if self.loss_name == "svm":
            return F.multi_margin_loss(scores, self.y) * scores.shape[1]
        return F.cross_entropy(scores, self.y)

    def loss(self, *, data: bool, reg: bool) -> tuple[float, dict[str, np.ndarray]]:
        for p in self._tensors.values():
            p.grad = None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            total = torch.zeros((), dtype=torch.float64)
            if data:
                total = total + self._data_loss(self.model(self.x))
            if reg:
                for name in self.weights:
                    total = total + 0.5 * self.reg * (self._tensors[name] ** 2).sum()
        if total.requires_grad:
            total.backward()
        grads = {
            name: p.grad.detach().numpy().copy() if p.grad is not None else np.zeros(p.shape)
            for name, p in self._tensors.items()
        }
        return float(total.detach()), grads

    def kinks(self) -> np.ndarray:
        masks: list[np.ndarray] = []

        def record(_m: nn.Module, inputs: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
            masks.append((inputs[0].detach() > 0).numpy().ravel())

        handles = [
            m.register_forward_hook(record) for m in self.model.modules() if isinstance(m, nn.ReLU)
        ]
        try:
            with torch.no_grad(), torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                scores = self.model(self.x)
        finally:
            for handle in handles:
                handle.remove()
        if self.loss_name == "svm":
            correct = scores[torch.arange(len(self.y)), self.y][:, None]
            masks.append((scores - correct + 1 > 0).numpy().ravel())
        return np.concatenate(masks) if masks else np.zeros(0, dtype=bool)
