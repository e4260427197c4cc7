"""The preflight `gridless check` runs before a study: gradient check plus sanity checks
for the study's model, at the center of its search space. A check that does not apply
(to a custom model, or to regression) is skipped with its reason, in `skipped` and as a
note "skipped <check>: <reason>"."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gridless.common.space import (
    Choice,
    NumericDistribution,
    is_active,
    parse_space,
    sampling_order,
)
from gridless.worker.data import Dataset, load_dataset
from gridless.worker.diagnostics.gradcheck import (
    CheckTarget,
    GradcheckReport,
    NumpyTarget,
    burn_in,
    gradient_check,
)
from gridless.worker.diagnostics.sanity import (
    CHANCE_CHECK,
    REG_CHECK,
    SanityResult,
    chance_loss_check,
    overfit_check,
    reg_check,
)
from gridless.worker.trainer import MODELS, custom_factory, resolve_hyperparams

__all__ = ["GRADIENT_CHECK", "OVERFIT_ACCURACY", "PreflightReport", "center_params", "preflight"]

CHECK_EXAMPLES = 3  # "use only few datapoints"
# Optimization settings for the overfit check: it tests the implementation, not the
# study's hyperparameters (which may be a deliberately bad coarse range).
OVERFIT_OPTIMIZER = {"update": "momentum", "learning_rate": 0.1, "schedule": "none", "ema": 0.0}
# MSE curves more steeply than softmax (a Hessian of 2/N per output against at most
# 1/(4N)): on the check's standardized targets lr 0.1 diverges, 0.01 fits 20 examples in
# about 50 epochs (k = 1 and 3 outputs, 8 and 64 features, NumPy and Torch).
OVERFIT_REGRESSION_LR = 0.01
# The names of what a report lists besides the sanity checks (sanity.CHANCE_CHECK, ...).
GRADIENT_CHECK = "gradient check"
OVERFIT_ACCURACY = "100% training accuracy of the overfit check"


@dataclass
class PreflightReport:
    """What `gridless check` prints; `passed` decides whether `gridless run` starts.

    `skipped` maps each check that did not apply to the reason; a skipped check neither
    passes nor fails.
    """

    model: str
    params: dict[str, Any]
    gradcheck: GradcheckReport | None = None
    sanity: list[SanityResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        grads_ok = self.gradcheck is None or self.gradcheck.passed
        return grads_ok and all(result.passed for result in self.sanity)

    @property
    def ran(self) -> list[str]:
        """The names of the checks that ran, in order."""
        grads = [GRADIENT_CHECK] if self.gradcheck is not None else []
        return grads + [result.name for result in self.sanity]

    def skip(self, check: str, reason: str) -> None:
        """Record a check that does not apply, with a note saying why."""
        self.skipped[check] = reason
        self.notes.append(f"skipped {check}: {reason}")


def center_params(space: Mapping[str, Any], fixed: Mapping[str, Any]) -> dict[str, Any]:
    """The middle of every range in its sampling scale; the first option of a choice."""
    params: dict[str, Any] = {}
    dists = parse_space(space)
    for name in sampling_order(dists):
        dist = dists[name]
        if not is_active(dist, params):
            continue  # a conditional parameter whose parent took another option
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
    if data.is_regression:
        report.skip(
            OVERFIT_ACCURACY,
            "regression targets have no classes; the overfit check aims at a near-zero loss",
        )
    if ":" in model:
        factory = custom_factory(model)
        overfit = {k: 0.0 if k == "reg" else v for k, v in params.items()}
        report.sanity.append(overfit_check(factory, data, overfit))
        for check in (GRADIENT_CHECK, CHANCE_CHECK, REG_CHECK):
            report.skip(check, "it needs a built-in model's parameters, not a custom model's")
        return report
    library, _, kind = model.partition(".")
    hp = resolve_hyperparams(params)
    # The regularization phase needs a non-zero strength to check anything.
    check_hp = {**hp, "reg": max(float(hp["reg"]), 1e-3)}
    target = _target(library, kind, data, check_hp)
    loss = str(hp["loss"])
    targets = data.y_train[:CHECK_EXAMPLES] if loss == "mse" else None
    report.sanity.append(
        chance_loss_check(target, num_classes=data.num_classes, loss=loss, targets=targets)
    )
    report.sanity.append(reg_check(target))
    burn_in(target, steps=5, learning_rate=1e-2)
    report.gradcheck = gradient_check(target)
    overfit = {**hp, **OVERFIT_OPTIMIZER, "reg": 0.0, "dropout": 0.0}
    if data.is_regression:
        overfit["learning_rate"] = OVERFIT_REGRESSION_LR
    report.sanity.append(overfit_check(MODELS[model], data, overfit))
    if not math.isfinite(report.gradcheck.threshold):  # pragma: no cover - defensive
        report.notes.append("gradient-check threshold is not finite")
    return report
