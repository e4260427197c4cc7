"""Hard limits that no border extension of a range crosses.

Border extensions walk a range toward better values; without a ceiling they walked
`hidden` from [16, 512] to [337, 38982] (two-layer nets that took 3-4 GB per worker and
never finished an epoch), and on a user's function `hidden` to 155,000 and `reg` to
1e-13. So every numeric range has a default limit *relative to the range the user
wrote* (`relative_limits`): three decades beyond each edge of a log range, one decade
for an integer log range (a width or a count grows the cost of a trial with it), and
twice the width beyond each edge of a linear one; a linear range the user started at or
above 0 stays >= 0, an integer one that started at or above 1 stays >= 1. The built-in
models' parameters also have absolute limits (`BUILTIN_LIMITS`); where both apply, the
tighter holds. `limits: [low, high]` beside a range in the spec replaces both. A range
the user wrote wider than a default limit is never cut: the limit then becomes the
range's own edge. The table lives in `common` because the master, which narrows, does
not import the worker's models.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from gridless.common.errors import SpecError
from gridless.common.space import NumericDistribution, parse_space

__all__ = [
    "BUILTIN_LIMITS",
    "INT_LOG_DECADES",
    "LINEAR_WIDTHS",
    "LOG_DECADES",
    "default_limits",
    "is_builtin_model",
    "relative_limits",
]

# How far beyond the user's range a walk may go by default (see the module's docstring).
LOG_DECADES = 3.0
INT_LOG_DECADES = 1.0
LINEAR_WIDTHS = 2.0

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


def relative_limits(dist: NumericDistribution) -> tuple[float, float]:
    """The default limits of a range the user wrote, relative to it: `LOG_DECADES`
    beyond each edge of a log range (`INT_LOG_DECADES` for an integer one), and
    `LINEAR_WIDTHS` widths beyond each edge of a linear one (a zero-width range: its
    magnitude, at least 1). A range that starts at or above 0 (1 for integers) keeps
    that floor; integer limits are whole numbers."""
    low, high = float(dist.low), float(dist.high)
    if dist.log:
        decades = INT_LOG_DECADES if dist.integer else LOG_DECADES
        lo, hi = low / 10**decades, high * 10**decades
        if dist.integer:
            lo, hi = max(1.0, float(math.floor(lo))), float(math.ceil(hi))
        return lo, hi
    width = high - low if high > low else max(1.0, abs(high))
    lo, hi = low - LINEAR_WIDTHS * width, high + LINEAR_WIDTHS * width
    floor = 1.0 if dist.integer and low >= 1 else 0.0 if low >= 0 else -math.inf
    lo = max(lo, floor)
    if dist.integer:
        lo, hi = float(math.floor(lo)), float(math.ceil(hi))
    return lo, hi


def default_limits(spec: Mapping[str, Any]) -> dict[str, tuple[float, float]]:
    """The default hard limits of a study's numeric parameters (those without their own
    `limits:`): relative to the range the spec wrote (`relative_limits`), and for a
    built-in model within `BUILTIN_LIMITS` too (the tighter of the two on each side, but
    never inside the user's range)."""
    builtin = BUILTIN_LIMITS if is_builtin_model(spec) else {}
    limits: dict[str, tuple[float, float]] = {}
    try:
        space = parse_space(spec.get("space") or {})
    except SpecError:  # a stored spec is valid; a partial one (in a test) has none
        return dict(builtin)
    for name, dist in space.items():
        if not isinstance(dist, NumericDistribution):
            continue
        lo, hi = relative_limits(dist)
        if name in builtin:
            lo, hi = max(lo, float(builtin[name][0])), min(hi, float(builtin[name][1]))
        limits[name] = (min(lo, float(dist.low)), max(hi, float(dist.high)))
    return {**builtin, **limits}
