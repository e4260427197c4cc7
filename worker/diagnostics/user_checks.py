"""The seed's checks for the user's own Torch code: `gridless.checks.gradcheck`
and `gridless.checks.sanity`, and the record `gridless check` prints of them.

`gradcheck(module, inputs)` compares autograd's gradient of every parameter tensor with
centered differences in float64 on a copy of the module (a few dimensions of each, the
seed's verdict bands, a step-size sweep, ReLU kinks detected and not judged, dropout
under one fixed seed): a custom layer's wrong backward fails it. `sanity(model, loss_fn,
batch)` runs the sanity checks: the loss at chance with small output weights, and
overfitting the batch to near-zero loss. Called inside a training function while
`gridless check` runs it, their results appear in its report.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from gridless.worker.diagnostics.gradcheck import GradcheckReport, gradient_check
from gridless.worker.diagnostics.sanity import SanityResult
from gridless.worker.diagnostics.torch_target import TorchTarget

__all__ = ["CheckRecord", "gradcheck", "recording", "sanity"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
CHANCE_TOLERANCE = 0.05  # within 5% of -ln(1/C), as the built-in models' check
OVERFIT_STEPS = 300


@dataclass
class CheckRecord:
    """What the helpers ran while `gridless check` ran the training function."""

    gradchecks: list[GradcheckReport] = field(default_factory=list)
    sanity: list[SanityResult] = field(default_factory=list)


_active: list[CheckRecord] = []


@contextlib.contextmanager
def recording() -> Iterator[CheckRecord]:
    """Collect the results of every helper called inside the block."""
    record = CheckRecord()
    _active.append(record)
    try:
        yield record
    finally:
        _active.remove(record)


class _ModuleTarget(TorchTarget):
    """A user's module as a gradient-check target: its own loss, or a fixed random
    projection of its outputs (a scalar whose gradient reaches every output)."""

    def __init__(
        self,
        module: nn.Module,
        inputs: torch.Tensor,
        targets: torch.Tensor | None,
        loss_fn: LossFn | None,
        seed: int,
    ) -> None:
        x = inputs.detach().cpu().double().numpy()
        y = targets.detach().cpu().numpy() if targets is not None else np.zeros(len(x))
        self.loss_fn = loss_fn
        self._projection: torch.Tensor | None = None
        model = copy.deepcopy(module).cpu()
        if not any(p.dim() > 1 and n.endswith("weight") for n, p in model.named_parameters()):
            raise ValueError("gridless.checks.gradcheck: the module has no weight matrix")
        super().__init__(model, x, y, reg=0.0, loss="softmax", seed=seed)
        if targets is not None and targets.is_floating_point():
            self.y = self.y.double()

    def _data_loss(self, scores: torch.Tensor) -> torch.Tensor:
        if self.loss_fn is not None:
            return self.loss_fn(scores, self.y)
        if self._projection is None:
            draw = torch.Generator().manual_seed(self.seed)
            self._projection = torch.randn(scores.shape, generator=draw, dtype=scores.dtype)
        return (scores * self._projection).sum()


def gradcheck(
    module: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor | None = None,
    *,
    loss_fn: LossFn | None = None,
    dims_per_param: int = 5,
    seed: int = 0,
) -> GradcheckReport:
    """The seed's gradient check of every parameter tensor of `module` on `inputs` (use
    2 or 3 examples). The module is copied; yours is not changed.

    Args:
        module: any `torch.nn.Module`, custom autograd functions included.
        inputs: a small batch; `targets` and `loss_fn` when the loss is to be checked too
            (otherwise a fixed random projection of the outputs is differentiated).
    Returns:
        a report: `passed`, and per parameter the worst relative error, the step size
        that gave it, kinks crossed and the seed's verdict.
    """
    target = _ModuleTarget(module, inputs, targets, loss_fn, seed)
    report = gradient_check(target, dims_per_param=dims_per_param, seed=seed)
    # A module has no regularization term of gridless's: those rows would check nothing.
    report.rows = [row for row in report.rows if row.phase == "data"]
    report.notes.append(
        "regularization not checked: a weight decay in your optimizer is not part of "
        "the module's gradient"
    )
    for record in _active:
        record.gradchecks.append(report)
    return report


def sanity(
    model: nn.Module,
    loss_fn: LossFn,
    batch: tuple[torch.Tensor, torch.Tensor],
    *,
    num_classes: int | None = None,
    seed: int = 0,
) -> list[SanityResult]:
    """The seed's sanity checks on a copy of `model` and one small batch (about 20
    examples): for a classifier (`num_classes`), the loss at chance with small output
    weights; then overfitting the batch to near-zero loss."""
    x, y = batch
    results: list[SanityResult] = []
    if num_classes is not None:
        results.append(_chance(model, loss_fn, x, y, num_classes))
    results.append(_overfit(model, loss_fn, x, y, seed=seed))
    for record in _active:
        record.sanity.extend(results)
    return results


def _last_linear(model: nn.Module) -> nn.Linear | nn.Conv2d | None:
    layers = [m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    return layers[-1] if layers else None


def _chance(
    model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, num_classes: int
) -> SanityResult:
    expected = math.log(num_classes)
    probe = copy.deepcopy(model).eval()
    last = _last_linear(probe)
    if last is None:
        return SanityResult("initial loss at chance", False, "no Linear or Conv2d layer to scale")
    with torch.no_grad():
        last.weight.mul_(1e-3)
        if last.bias is not None:
            last.bias.zero_()
        loss = float(loss_fn(probe(x), y))
    passed = abs(loss - expected) <= CHANCE_TOLERANCE * expected
    return SanityResult(
        "initial loss at chance",
        passed,
        f"{loss:.4f} with small output weights, expected -ln(1/{num_classes}) = {expected:.4f}",
    )


def _overfit(
    model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, *, seed: int
) -> SanityResult:
    torch.manual_seed(seed)
    probe = copy.deepcopy(model).train()
    optimizer = torch.optim.Adam(probe.parameters(), lr=1e-2)
    with torch.no_grad():
        first = float(loss_fn(probe(x), y))
    loss = first
    step = 0
    while step < OVERFIT_STEPS:
        step += 1
        optimizer.zero_grad()
        value = loss_fn(probe(x), y)
        value.backward()
        optimizer.step()
        loss = float(value.detach())
        if loss < 1e-3 * max(first, 1e-12) or loss < 1e-4:
            break
    passed = math.isfinite(loss) and loss < 0.01 * first
    return SanityResult(
        f"overfit {len(x)} examples",
        passed,
        f"loss {first:.4g} -> {loss:.4g} in {step} Adam steps (want near zero)",
    )
