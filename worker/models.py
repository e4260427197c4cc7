"""NumPy models: a fully connected net, affine-ReLU-...-affine-softmax with L2 regularization."""

from __future__ import annotations

import itertools

import numpy as np

from worker.layers import (
    affine_backward,
    affine_forward,
    relu_backward,
    relu_forward,
    softmax_loss,
)

__all__ = ["FullyConnectedNet"]


class FullyConnectedNet:
    """Parameters `W1, b1, ..., WL, bL`; He initialization (variance-preserving for ReLU).

    Args:
        input_dim: D, features per example.
        hidden_dims: widths of the hidden layers (one entry: the two-layer net).
        num_classes: C.
        reg: L2 strength; the loss adds 0.5 * reg * sum(W**2) over weight matrices.
        rng: the generator for initialization.
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dims: list[int],
        num_classes: int,
        *,
        reg: float,
        rng: np.random.Generator,
    ) -> None:
        self.reg = reg
        dims = [input_dim, *hidden_dims, num_classes]
        self.num_layers = len(dims) - 1
        self.params: dict[str, np.ndarray] = {}
        for i, (fan_in, fan_out) in enumerate(itertools.pairwise(dims), start=1):
            self.params[f"W{i}"] = rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)
            self.params[f"b{i}"] = np.zeros(fan_out)

    def scores(self, x: np.ndarray) -> np.ndarray:
        """Class scores (N, C) for x (N, D)."""
        out = x
        for i in range(1, self.num_layers + 1):
            out, _ = affine_forward(out, self.params[f"W{i}"], self.params[f"b{i}"])
            if i < self.num_layers:
                out = np.maximum(out, 0)
        return out

    def loss(self, x: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        """Data loss + L2 loss and the gradient of every parameter, for x (N, D), y (N,)."""
        caches = []
        out = x
        for i in range(1, self.num_layers + 1):
            out, affine_cache = affine_forward(out, self.params[f"W{i}"], self.params[f"b{i}"])
            relu_cache: tuple[np.ndarray, ...] = ()
            if i < self.num_layers:
                out, relu_cache = relu_forward(out)
            caches.append((affine_cache, relu_cache))
        data_loss, dout = softmax_loss(out, y)
        grads: dict[str, np.ndarray] = {}
        reg_loss = 0.0
        for i in range(self.num_layers, 0, -1):
            affine_cache, relu_cache = caches[i - 1]
            if i < self.num_layers:
                dout = relu_backward(dout, relu_cache)
            dout, dw, db = affine_backward(dout, affine_cache)
            w = self.params[f"W{i}"]
            grads[f"W{i}"] = dw + self.reg * w
            grads[f"b{i}"] = db
            reg_loss += 0.5 * self.reg * float(np.sum(w * w))
        return data_loss + reg_loss, grads

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predicted labels (N,)."""
        return np.asarray(np.argmax(self.scores(x), axis=1))
