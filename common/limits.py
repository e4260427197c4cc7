"""Hard limits of the built-in models' hyperparameters (issue 20).

Border extensions walk a range toward better values; without a ceiling they walked
`hidden` from [16, 512] to [337, 38982], two-layer nets 11-12k wide that took 3-4 GB per
worker and never finished an epoch. These are the limits that no extension of a built-in
model's range crosses unless the spec gives its own (`limits: [low, high]` beside the
range). A range the user wrote wider than its default limit is never cut: the limit
then becomes the range's own edge. The table lives in `common` because the master, which
narrows, does not import the worker's models.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["BUILTIN_LIMITS", "default_limits", "is_builtin_model"]

# name -> (lowest, highest) value any stage of a built-in model may search. Chosen wide
# enough for every published use of these models, tight enough that a trial still fits
# in a worker's memory and time (hidden 4096 x 2 layers: about 17M weights).
BUILTIN_LIMITS: dict[str, tuple[float, float]] = {
    "learning_rate": (1e-8, 1e2),
    "reg": (1e-10, 1e2),
    "hidden": (1, 4096),
    "layers": (1, 16),
    "filters": (1, 512),
    "dropout": (0.0, 0.95),
    "momentum": (0.0, 0.999),
    "momentum_final": (0.0, 0.999),
    "momentum_epochs": (1, 1000),
    "decay_rate": (0.0, 0.9999),
    "beta1": (0.0, 0.999),
    "beta2": (0.0, 0.99999),
    "eps": (1e-12, 1.0),
    "batch_size": (1, 8192),
    "lr_decay": (0.0, 1.0),
    "lr_step": (1, 1000),
    "lr_k": (0.0, 100.0),
    "lr_patience": (0, 100),
    "ema": (0.0, 0.9999),
    "lbfgs_iters": (1, 1000),
}


def is_builtin_model(spec: Mapping[str, Any]) -> bool:
    """Whether a study (its spec as stored) trains a built-in model (`numpy.mlp`,
    `torch.convnet`, ...), whose parameter names `BUILTIN_LIMITS` knows."""
    model = str(spec.get("model", "numpy.mlp"))
    return (
        spec.get("train") is None and ":" not in model and model.startswith(("numpy.", "torch."))
    )


def default_limits(spec: Mapping[str, Any]) -> dict[str, tuple[float, float]]:
    """The default hard limits of a study's parameters: the built-in table for a built-in
    model, none for the user's own code (a `train:` function or a trainer factory, whose
    parameter names mean what its author says: give `limits:` in the spec there)."""
    return dict(BUILTIN_LIMITS) if is_builtin_model(spec) else {}
