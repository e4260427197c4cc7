"""NumPy layers as forward/backward pairs (CS231n style); shapes in each docstring."""

from __future__ import annotations

import numpy as np

__all__ = [
    "affine_backward",
    "affine_forward",
    "relu_backward",
    "relu_forward",
    "softmax_loss",
]

Cache = tuple[np.ndarray, ...]


def affine_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, Cache]:
    """out = x @ w + b for x (N, D), w (D, M), b (M,) -> out (N, M)."""
    return x @ w + b, (x, w)


def affine_backward(dout: np.ndarray, cache: Cache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of `affine_forward`: dout (N, M) -> dx (N, D), dw (D, M), db (M,)."""
    x, w = cache
    return dout @ w.T, x.T @ dout, dout.sum(axis=0)


def relu_forward(x: np.ndarray) -> tuple[np.ndarray, Cache]:
    """max(0, x), elementwise; any shape."""
    return np.maximum(x, 0), (x,)


def relu_backward(dout: np.ndarray, cache: Cache) -> np.ndarray:
    """Gradient of `relu_forward`; the kink at 0 gets gradient 0."""
    (x,) = cache
    return dout * (x > 0)


def softmax_loss(scores: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of softmax(scores (N, C)) for labels y (N,) -> (loss, dscores (N, C))."""
    shifted = scores - scores.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    n = scores.shape[0]
    loss = float(-log_probs[np.arange(n), y].mean())
    dscores = np.exp(log_probs)
    dscores[np.arange(n), y] -= 1.0
    return loss, dscores / n
