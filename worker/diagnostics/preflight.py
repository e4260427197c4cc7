"""The preflight `gridless check` runs before a study: gradient check plus sanity checks
for the study's model, at the center of its search space."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gridless.common.space import Choice, NumericDistribution, parse_space
from gridless.worker.data import Dataset, load_dataset
from gridless.worker.diagnostics.gradcheck import (
    CheckTarget,
    GradcheckReport,
    NumpyTarget,
    burn_in,
    gradient_check,
)
from gridless.worker.diagnostics.sanity import (
    SanityResult,
    chance_loss_check,
    overfit_check,
    reg_check,
)
from gridless.worker.trainer import MODELS, _custom_factory, resolve_hyperparams

__all__ = ["PreflightReport", "center_params", "preflight"]

CHECK_EXAMPLES = 3  # "use only few datapoints"
# Optimization settings for the overfit check: it tests the implementation, not the
# study's hyperparameters (which may be a deliberately bad coarse range).
OVERFIT_OPTIMIZER = {"update": "momentum", "learning_rate": 0.1, "schedule": "none", "ema": 0.0}


@dataclass
class PreflightReport:
    """What `gridless check` prints; `passed` decides whether `gridless run` starts."""

    model: str
    params: dict[str, Any]
    gradcheck: GradcheckReport | None = None
    sanity: list[SanityResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        grads_ok = self.gradcheck is None or self.gradcheck.passed
        return grads_ok and all(result.passed for result in self.sanity)


def center_params(space: Mapping[str, Any], fixed: Mapping[str, Any]) -> dict[str, Any]:
    """The middle of every range in its sampling scale; the first option of a choice."""
    params: dict[str, Any] = {}
    for name, dist in parse_space(space).items():
        if isinstance(dist, Choice):
            params[name] = dist.options[0]
        elif isinstance(dist, NumericDistribution):
            mid = dist.from_scale((dist.to_scale(dist.low) + dist.to_scale(dist.high)) / 2)
            params[name] = round(mid) if dist.integer else mid
    return {**params, **fixed}


def _target(library: str, kind: str, data: Dataset, hp: dict[str, Any]) -> CheckTarget:
    x, y = data.x_train[:CHECK_EXAMPLES], data.y_train[:CHECK_EXAMPLES]
    if library == "numpy":
        from gridless.worker.numpy_trainer import build_numpy_model

        numpy_model = build_numpy_model(kind, data, hp, np.random.default_rng(0))
        return NumpyTarget(numpy_model, x, y, seed=0)
    import torch

    from gridless.worker.diagnostics.torch_target import TorchTarget
    from gridless.worker.torch_trainer import build_torch_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        torch_model = build_torch_model(kind, data, hp)
    return TorchTarget(torch_model, x, y, reg=float(hp["reg"]), loss=str(hp["loss"]))


def preflight(
    model: str,
    dataset: str | Mapping[str, str],
    space: Mapping[str, Any],
    fixed: Mapping[str, Any],
) -> PreflightReport:
    """Gradient check and sanity checks of a study's model.

    Raises:
        ValueError: when the model, the data or a hyperparameter is invalid.
    """
    data = load_dataset(dataset)
    params = center_params(space, fixed)
    report = PreflightReport(model=model, params=params)
    if ":" in model:
        factory = _custom_factory(model)
        overfit = {k: 0.0 if k == "reg" else v for k, v in params.items()}
        report.sanity.append(overfit_check(factory, data, overfit))
        report.notes.append(
            "custom model: the gradient check, the chance-loss and the regularization checks "
            "need a built-in model; only the overfit check ran"
        )
        return report
    library, _, kind = model.partition(".")
    hp = resolve_hyperparams(params)
    # The regularization phase needs a non-zero strength to check anything.
    check_hp = {**hp, "reg": max(float(hp["reg"]), 1e-3)}
    target = _target(library, kind, data, check_hp)
    report.sanity.append(
        chance_loss_check(target, num_classes=data.num_classes, loss=str(hp["loss"]))
    )
    report.sanity.append(reg_check(target))
    burn_in(target, steps=5, learning_rate=1e-2)
    report.gradcheck = gradient_check(target)
    overfit = {**hp, **OVERFIT_OPTIMIZER, "reg": 0.0, "dropout": 0.0}
    report.sanity.append(overfit_check(MODELS[model], data, overfit))
    if not math.isfinite(report.gradcheck.threshold):  # pragma: no cover - defensive
        report.notes.append("gradient-check threshold is not finite")
    return report
