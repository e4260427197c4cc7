"""NumPy models built from `worker.layers`: a fully connected net and a small conv net.

Both keep parameters in `params` (weights `W*`, biases `b*`, batch-norm `gamma*`/`beta*`)
and non-trained state in `buffers` (batch-norm running statistics); `loss()` returns the
data loss plus L2 on the weight arrays, and the gradient of every parameter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from gridless.worker.init import init_weights
from gridless.worker.layers import (
    affine_backward,
    affine_forward,
    batchnorm_backward,
    batchnorm_forward,
    conv_backward,
    conv_forward,
    dropout_backward,
    dropout_forward,
    l2_loss,
    max_pool_backward,
    max_pool_forward,
    mse_loss,
    relu_backward,
    relu_forward,
    softmax_loss,
    svm_loss,
)

__all__ = ["LOSSES", "ConvNet", "FullyConnectedNet", "NumpyModel", "dead_fraction"]

LossFn = Callable[[np.ndarray, np.ndarray], tuple[float, np.ndarray]]
LOSSES: dict[str, LossFn] = {"softmax": softmax_loss, "svm": svm_loss, "mse": mse_loss}


def get_loss(name: str) -> LossFn:
    """Look up a data loss by name, listing the valid names on error."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; valid: {', '.join(sorted(LOSSES))}")
    return LOSSES[name]


def dead_fraction(act: np.ndarray) -> float:
    """Share of a ReLU layer's units that output 0 for every example of the batch: dead
    units (the seed: with a learning rate set too high, "as much as 40% of your network
    can be dead"). act: (N, H) for an affine layer; (N, F, H, W) counts filters.
    """
    alive = np.asarray(act > 0)
    if alive.ndim > 2:
        alive = np.asarray(alive.reshape(alive.shape[0], alive.shape[1], -1).any(axis=2))
    return float(1.0 - alive.any(axis=0).mean())


def _svm_active(scores: np.ndarray, y: np.ndarray) -> np.ndarray:
    correct = scores[np.arange(len(y)), y][:, None]
    return np.asarray(scores - correct + 1.0 > 0)


class NumpyModel:
    """What trainers, checks and diagnostics rely on."""

    data_loss: LossFn
    params: dict[str, np.ndarray]
    buffers: dict[str, np.ndarray]
    reg: float
    # Filled by `loss(..., record=True)`: per hidden layer, activation mean/std and the
    # std of the gradient flowing into it (the seed's "Activation / Gradient distributions").
    layer_stats: list[dict[str, float]]

    def loss(
        self,
        x: np.ndarray,
        y: np.ndarray,
        *,
        train: bool = True,
        seed: int | None = None,
        record: bool = False,
    ) -> tuple[float, dict[str, np.ndarray]]:
        raise NotImplementedError

    def scores(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predicted labels (N,), evaluation mode (for `mse`, `scores` are the predictions)."""
        return np.asarray(np.argmax(self.scores(x), axis=1))

    def weight_names(self) -> list[str]:
        """The arrays L2 regularization applies to."""
        return [k for k in self.params if k.startswith("W")]

    def kink_signature(self, x: np.ndarray, y: np.ndarray, *, seed: int | None) -> np.ndarray:
        """Every "winner" of a max in the forward pass, flattened: which ReLUs are on,
        which SVM margins are positive, which pool inputs win. If it differs between
        f(x+h) and f(x-h) a kink was crossed (the seed's "Kinks in the objective")."""
        raise NotImplementedError

    def depth(self) -> int:
        """Layers with weights, for relaxing gradient-check thresholds with depth."""
        return len(self.weight_names())


class FullyConnectedNet(NumpyModel):
    """{affine - [batch norm] - ReLU - [dropout]} x L - affine - softmax (or SVM, or MSE).

    Args:
        input_dim: D, features per example.
        hidden_dims: widths of the hidden layers (one entry: the two-layer net).
        num_classes: C, the output units: classes, or the k targets for `mse`.
        reg: L2 strength; the loss adds 0.5 * reg * sum(W**2) over weight matrices.
        rng: the generator for initialization.
        dropout: probability of dropping a hidden unit in training (0 disables).
        batchnorm: normalize each hidden layer's pre-activations.
        init: "he" (default), "xavier" or "naive" (std 0.01).
        loss: "softmax" (default), "svm", or "mse" for float targets (N, k).
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dims: list[int],
        num_classes: int,
        *,
        reg: float,
        rng: np.random.Generator,
        dropout: float = 0.0,
        batchnorm: bool = False,
        init: str = "he",
        loss: str = "softmax",
    ) -> None:
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), but got {dropout!r}")
        self.reg = reg
        self.dropout = dropout
        self.batchnorm = batchnorm
        self.data_loss = get_loss(loss)
        dims = [input_dim, *hidden_dims, num_classes]
        self.num_layers = len(dims) - 1
        self.params = {}
        self.buffers = {}
        self.layer_stats = []
        for i in range(1, self.num_layers + 1):
            fan_in, fan_out = dims[i - 1], dims[i]
            self.params[f"W{i}"] = init_weights(init, rng, fan_in, (fan_in, fan_out))
            self.params[f"b{i}"] = np.zeros(fan_out)
            if batchnorm and i < self.num_layers:
                self.params[f"gamma{i}"] = np.ones(fan_out)
                self.params[f"beta{i}"] = np.zeros(fan_out)
                self.buffers[f"bn{i}/mean"] = np.zeros(fan_out)
                self.buffers[f"bn{i}/var"] = np.ones(fan_out)

    def _bn_running(self, i: int) -> dict[str, np.ndarray]:
        return {"mean": self.buffers[f"bn{i}/mean"], "var": self.buffers[f"bn{i}/var"]}

    def _forward(
        self, x: np.ndarray, *, train: bool, seed: int | None
    ) -> tuple[np.ndarray, list[dict[str, Any]]]:
        rng = np.random.default_rng(seed) if train and self.dropout > 0 else None
        if train and self.dropout > 0 and seed is None:
            raise ValueError("training with dropout needs a seed for its masks")
        caches: list[dict[str, Any]] = []
        out = x
        for i in range(1, self.num_layers + 1):
            cache: dict[str, Any] = {}
            out, cache["affine"] = affine_forward(out, self.params[f"W{i}"], self.params[f"b{i}"])
            if i < self.num_layers:
                if self.batchnorm:
                    running = self._bn_running(i)
                    out, cache["bn"] = batchnorm_forward(
                        out,
                        self.params[f"gamma{i}"],
                        self.params[f"beta{i}"],
                        running,
                        train=train,
                    )
                    self.buffers[f"bn{i}/mean"], self.buffers[f"bn{i}/var"] = (
                        running["mean"],
                        running["var"],
                    )
                out, cache["relu"] = relu_forward(out)
                cache["activation"] = out
                out, cache["dropout"] = dropout_forward(out, self.dropout, train=train, rng=rng)
            caches.append(cache)
        return out, caches

    def scores(self, x: np.ndarray) -> np.ndarray:
        """Class scores (N, C) for x (N, D), evaluation mode (no dropout, running BN stats)."""
        return self._forward(x, train=False, seed=None)[0]

    def kink_signature(self, x: np.ndarray, y: np.ndarray, *, seed: int | None) -> np.ndarray:
        scores, caches = self._forward(x, train=True, seed=seed)
        masks = [cache["relu"][0] > 0 for cache in caches if "relu" in cache]
        if self.data_loss is svm_loss:
            masks.append(_svm_active(scores, y))
        return np.concatenate([m.ravel() for m in masks])

    def loss(
        self,
        x: np.ndarray,
        y: np.ndarray,
        *,
        train: bool = True,
        seed: int | None = None,
        record: bool = False,
    ) -> tuple[float, dict[str, np.ndarray]]:
        """Loss and gradients for x (N, D), labels y (N,) or targets (N, k) for `mse`;
        dropout masks come from `seed`."""
        scores, caches = self._forward(x, train=train, seed=seed)
        data_loss, dout = self.data_loss(scores, y)
        grads: dict[str, np.ndarray] = {}
        stats: list[dict[str, float]] = []
        for i in range(self.num_layers, 0, -1):
            cache = caches[i - 1]
            if i < self.num_layers:
                dout = dropout_backward(dout, cache["dropout"])
                if record:
                    act = cache["activation"]
                    stats.append(
                        {
                            "layer": float(i),
                            "act_mean": float(act.mean()),
                            "act_std": float(act.std()),
                            "dead_fraction": dead_fraction(act),
                            "grad_std": float(dout.std()),
                        }
                    )
                dout = relu_backward(dout, cache["relu"])
                if self.batchnorm:
                    dout, grads[f"gamma{i}"], grads[f"beta{i}"] = batchnorm_backward(
                        dout, cache["bn"]
                    )
            dout, dw, db = affine_backward(dout, cache["affine"])
            grads[f"W{i}"] = dw + self.reg * self.params[f"W{i}"]
            grads[f"b{i}"] = db
        if record:
            self.layer_stats = stats[::-1]
        reg_loss = l2_loss([self.params[k] for k in self.weight_names()], self.reg)
        return data_loss + reg_loss, grads


class ConvNet(NumpyModel):
    """conv 3x3 (pad 1) - [batch norm off] - ReLU - 2x2 max pool - affine - ReLU - affine.

    Args:
        image_shape: (C, H, W) of one example; inputs arrive flattened (N, C*H*W).
        num_classes: the output units: classes, or the k targets for `mse`.
        filters: number of 3x3 filters.
        hidden: width of the hidden affine layer.
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        num_classes: int,
        *,
        filters: int,
        hidden: int,
        reg: float,
        rng: np.random.Generator,
        init: str = "he",
        loss: str = "softmax",
    ) -> None:
        c, h, w = image_shape
        self.image_shape = image_shape
        self.reg = reg
        self.data_loss = get_loss(loss)
        self.buffers = {}
        self.layer_stats = []
        pooled = filters * (h // 2) * (w // 2)
        self.params = {
            "W1": init_weights(init, rng, c * 9, (filters, c, 3, 3)),
            "b1": np.zeros(filters),
            "W2": init_weights(init, rng, pooled, (pooled, hidden)),
            "b2": np.zeros(hidden),
            "W3": init_weights(init, rng, hidden, (hidden, num_classes)),
            "b3": np.zeros(num_classes),
        }

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        n = x.shape[0]
        c: dict[str, Any] = {}
        out, c["conv"] = conv_forward(
            x.reshape(n, *self.image_shape), self.params["W1"], self.params["b1"], pad=1
        )
        out, c["relu1"] = relu_forward(out)
        c["act1"] = out
        out, c["pool"] = max_pool_forward(out)
        c["pool_shape"] = out.shape
        out, c["fc1"] = affine_forward(out.reshape(n, -1), self.params["W2"], self.params["b2"])
        out, c["relu2"] = relu_forward(out)
        c["act2"] = out
        out, c["fc2"] = affine_forward(out, self.params["W3"], self.params["b3"])
        return out, c

    def scores(self, x: np.ndarray) -> np.ndarray:
        """Class scores (N, C) for x (N, C*H*W)."""
        return self._forward(x)[0]

    def kink_signature(self, x: np.ndarray, y: np.ndarray, *, seed: int | None) -> np.ndarray:
        scores, c = self._forward(x)
        pool_in, pool_out, size = c["pool"]
        n, ch, h, w = pool_in.shape
        blocks = pool_in.reshape(n, ch, h // size, size, w // size, size)
        masks = [
            c["relu1"][0] > 0,
            blocks == pool_out[:, :, :, None, :, None],
            c["relu2"][0] > 0,
        ]
        if self.data_loss is svm_loss:
            masks.append(_svm_active(scores, y))
        return np.concatenate([m.ravel() for m in masks])

    def loss(
        self,
        x: np.ndarray,
        y: np.ndarray,
        *,
        train: bool = True,
        seed: int | None = None,
        record: bool = False,
    ) -> tuple[float, dict[str, np.ndarray]]:
        """Loss and gradients for x (N, C*H*W), y (N,)."""
        scores, c = self._forward(x)
        data_loss, dout = self.data_loss(scores, y)
        grads: dict[str, np.ndarray] = {}
        dout, grads["W3"], grads["b3"] = affine_backward(dout, c["fc2"])
        stats = [
            {
                "layer": 2.0,
                "act_mean": float(c["act2"].mean()),
                "act_std": float(c["act2"].std()),
                "dead_fraction": dead_fraction(c["act2"]),
                "grad_std": float(dout.std()),
            }
        ]
        dout = relu_backward(dout, c["relu2"])
        dout, grads["W2"], grads["b2"] = affine_backward(dout, c["fc1"])
        dout = max_pool_backward(dout.reshape(c["pool_shape"]), c["pool"])
        stats.insert(
            0,
            {
                "layer": 1.0,
                "act_mean": float(c["act1"].mean()),
                "act_std": float(c["act1"].std()),
                "dead_fraction": dead_fraction(c["act1"]),
                "grad_std": float(dout.std()),
            },
        )
        dout = relu_backward(dout, c["relu1"])
        _, grads["W1"], grads["b1"] = conv_backward(dout, c["conv"])
        for k in self.weight_names():
            grads[k] = grads[k] + self.reg * self.params[k]
        if record:
            self.layer_stats = stats
        reg_loss = l2_loss([self.params[k] for k in self.weight_names()], self.reg)
        return data_loss + reg_loss, grads
