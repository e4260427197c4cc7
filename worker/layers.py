"""NumPy layers as forward/backward pairs (CS231n style); shapes in each docstring.

Every `*_forward` returns `(out, cache)`; the matching `*_backward` takes the upstream
gradient and that cache. Randomness (dropout) comes from an explicit seed, so a gradient
check can replay the very same mask for f(x+h), f(x-h) and the analytic gradient (the
seed: "force a particular random seed before evaluating both").
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "affine_backward",
    "affine_forward",
    "batchnorm_backward",
    "batchnorm_forward",
    "conv_backward",
    "conv_forward",
    "dropout_backward",
    "dropout_forward",
    "l2_loss",
    "max_pool_backward",
    "max_pool_forward",
    "mse_loss",
    "relu_backward",
    "relu_forward",
    "softmax_loss",
    "svm_loss",
]

Cache = tuple[Any, ...]


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
    return np.asarray(dout * (x > 0))


def dropout_forward(
    x: np.ndarray, p: float, *, train: bool, rng: np.random.Generator | None
) -> tuple[np.ndarray, Cache]:
    """Inverted dropout: drop each unit with probability `p` and scale survivors by 1/(1-p).

    At test time (`train=False`) or with `p == 0` it is the identity, so no rescaling is
    needed at inference. Any shape.
    """
    if not train or p <= 0.0:
        return x, (None,)
    if rng is None:
        raise ValueError("dropout in training needs an explicit random generator")
    mask = (rng.random(x.shape) >= p) / (1.0 - p)
    return x * mask, (mask,)


def dropout_backward(dout: np.ndarray, cache: Cache) -> np.ndarray:
    """Gradient of `dropout_forward` (the same mask)."""
    (mask,) = cache
    return dout if mask is None else np.asarray(dout * mask)


def batchnorm_forward(
    x: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    running: dict[str, np.ndarray],
    *,
    train: bool,
    momentum: float = 0.9,
    eps: float = 1e-5,
) -> tuple[np.ndarray, Cache]:
    """Batch normalization of x (N, D) with scale gamma (D,) and shift beta (D,).

    Training uses the batch's mean and variance and updates `running` (keys `mean`,
    `var`) in place; evaluation uses the running statistics.
    """
    if train:
        mu = x.mean(axis=0)
        var = x.var(axis=0)
        running["mean"] = momentum * running["mean"] + (1 - momentum) * mu
        running["var"] = momentum * running["var"] + (1 - momentum) * var
    else:
        mu, var = running["mean"], running["var"]
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat = (x - mu) * inv_std
    return gamma * x_hat + beta, (x_hat, gamma, inv_std, train)


def batchnorm_backward(
    dout: np.ndarray, cache: Cache
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of `batchnorm_forward`: dout (N, D) -> dx (N, D), dgamma (D,), dbeta (D,)."""
    x_hat, gamma, inv_std, train = cache
    dgamma = (dout * x_hat).sum(axis=0)
    dbeta = dout.sum(axis=0)
    dx_hat = dout * gamma
    if not train:
        return dx_hat * inv_std, dgamma, dbeta
    n = dout.shape[0]
    dx = (inv_std / n) * (n * dx_hat - dx_hat.sum(axis=0) - x_hat * (dx_hat * x_hat).sum(axis=0))
    return dx, dgamma, dbeta


def softmax_loss(scores: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of softmax(scores (N, C)) for labels y (N,) -> (loss, dscores (N, C))."""
    shifted = scores - scores.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    n = scores.shape[0]
    loss = float(-log_probs[np.arange(n), y].mean())
    dscores = np.exp(log_probs)
    dscores[np.arange(n), y] -= 1.0
    return loss, dscores / n


def svm_loss(scores: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Weston-Watkins multiclass SVM: mean over N of sum_{j != y} max(0, s_j - s_y + 1).

    scores (N, C), y (N,) -> (loss, dscores (N, C)). At chance (all scores ~0) the loss
    is C - 1 (the seed's sanity check).
    """
    n = scores.shape[0]
    correct = scores[np.arange(n), y][:, None]
    margins = np.maximum(0.0, scores - correct + 1.0)
    margins[np.arange(n), y] = 0.0
    loss = float(margins.sum() / n)
    positive = (margins > 0).astype(scores.dtype)
    positive[np.arange(n), y] = -positive.sum(axis=1)
    return loss, positive / n


def mse_loss(pred: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean squared error over every entry: mean((pred - y)**2) for predictions and targets
    (N, k) -> (loss, dpred (N, k)). Predicting each output's mean costs its variance (the
    regression counterpart of the seed's loss at chance)."""
    diff = pred - y
    return float(np.mean(diff * diff)), 2.0 * diff / diff.size


def l2_loss(weights: list[np.ndarray], reg: float) -> float:
    """0.5 * reg * sum of squared weights; its gradient for w is reg * w."""
    return 0.5 * reg * float(sum(np.sum(w * w) for w in weights))


def _im2col_indices(
    shape: tuple[int, int, int, int], kh: int, kw: int, pad: int, stride: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    _, c, h, w = shape
    out_h = (h + 2 * pad - kh) // stride + 1
    out_w = (w + 2 * pad - kw) // stride + 1
    i0 = np.tile(np.repeat(np.arange(kh), kw), c)
    i1 = stride * np.repeat(np.arange(out_h), out_w)
    j0 = np.tile(np.arange(kw), kh * c)
    j1 = stride * np.tile(np.arange(out_w), out_h)
    i = i0.reshape(-1, 1) + i1.reshape(1, -1)
    j = j0.reshape(-1, 1) + j1.reshape(1, -1)
    k = np.repeat(np.arange(c), kh * kw).reshape(-1, 1)
    return k, i, j, out_h, out_w


def conv_forward(
    x: np.ndarray, w: np.ndarray, b: np.ndarray, *, stride: int = 1, pad: int = 0
) -> tuple[np.ndarray, Cache]:
    """Convolution of x (N, C, H, W) with filters w (F, C, HH, WW) and biases b (F,).

    Returns out (N, F, H', W') with H' = (H + 2 pad - HH) / stride + 1 (likewise W').
    """
    n = x.shape[0]
    f, _, kh, kw = w.shape
    k, i, j, out_h, out_w = _im2col_indices(x.shape, kh, kw, pad, stride)
    x_pad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    cols = x_pad[:, k, i, j]  # (N, C*HH*WW, H'*W')
    out = np.einsum("fk,nkp->nfp", w.reshape(f, -1), cols, optimize=True) + b[None, :, None]
    return out.reshape(n, f, out_h, out_w), (x.shape, w, cols, (k, i, j), pad)


def conv_backward(dout: np.ndarray, cache: Cache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of `conv_forward`: dout (N, F, H', W') -> dx, dw, db of the inputs' shapes."""
    x_shape, w, cols, (k, i, j), pad = cache
    n, c, h, wd = x_shape
    f = w.shape[0]
    dout_flat = dout.reshape(n, f, -1)  # (N, F, P)
    db = dout_flat.sum(axis=(0, 2))
    dw = np.einsum("nfp,nkp->fk", dout_flat, cols, optimize=True).reshape(w.shape)
    dcols = np.einsum("fk,nfp->nkp", w.reshape(f, -1), dout_flat, optimize=True)
    dx_pad = np.zeros((n, c, h + 2 * pad, wd + 2 * pad), dtype=dout.dtype)
    np.add.at(dx_pad, (slice(None), k, i, j), dcols)  # type: ignore[arg-type]
    dx = dx_pad[:, :, pad : pad + h, pad : pad + wd] if pad else dx_pad
    return dx, dw, db


def max_pool_forward(x: np.ndarray, *, size: int = 2) -> tuple[np.ndarray, Cache]:
    """Non-overlapping `size` x `size` max pooling of x (N, C, H, W), H and W divisible."""
    n, c, h, w = x.shape
    if h % size or w % size:
        raise ValueError(f"max pool of size {size} needs H and W divisible by it, got {h}x{w}")
    blocks = x.reshape(n, c, h // size, size, w // size, size)
    out = blocks.max(axis=(3, 5))
    return out, (x, out, size)


def max_pool_backward(dout: np.ndarray, cache: Cache) -> np.ndarray:
    """Gradient of `max_pool_forward`: routed to the winner of each window (ties share it
    equally, so the kink is handled consistently)."""
    x, out, size = cache
    n, c, h, w = x.shape
    blocks = x.reshape(n, c, h // size, size, w // size, size)
    winners = blocks == out[:, :, :, None, :, None]
    share = winners / winners.sum(axis=(3, 5), keepdims=True)
    dx = share * dout[:, :, :, None, :, None]
    return np.asarray(dx.reshape(n, c, h, w))
