"""A Torch epoch's babysitting statistics, kept on the training device until the epoch ends.

The seed's babysitting numbers (the loss per step, the update:weight ratio per parameter
array, each hidden layer's activations and gradients) are recorded as device tensors, so
the training loop never waits for the device to hand a number to the host;
`EpochStats.finish` moves them all in one transfer. Only the divergence check reads
losses during the epoch, `DIVERGENCE_CHECK_STEPS` at a time.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["DIVERGENCE_CHECK_STEPS", "EpochStats", "mean_update_ratios", "step_norms", "to_host"]

# Steps between divergence checks. Each check moves the losses since the last one to the
# host in one transfer, where a check per step would stall the device on every step; an
# exploding epoch runs at most this many steps past the loss that exploded.
DIVERGENCE_CHECK_STEPS = 16


def to_host(tensors: list[torch.Tensor]) -> list[float]:
    """0-d or 1-d tensors on one device as host floats, flattened, in a single transfer
    (through float64, so a float32 value reads exactly as `float(tensor)` reads it)."""
    if not tensors:
        return []
    values: list[float] = torch.cat([t.detach().double().reshape(-1) for t in tensors]).tolist()
    return values


def step_norms(before: list[torch.Tensor], after: list[torch.Tensor]) -> torch.Tensor:
    """The norm of each parameter array before a step, then the norm of its update.

    Returns:
        A (2P,) tensor on the parameters' device: P norms of `before`, P of `after - before`.
    """
    with torch.no_grad():
        # torch's multi-tensor kernels (as in clip_grad_norm_): a few calls for all P
        # arrays instead of 3P, which keeps this as cheap on the CPU as a norm per array
        updates = torch._foreach_sub(after, before)
        return torch.stack(torch._foreach_norm([*before, *updates]))


def mean_update_ratios(norms: torch.Tensor) -> torch.Tensor:
    """‖update‖ / ‖weights before it‖ per step and parameter array, 0 where the weights
    were all zero, averaged over the steps: the seed's "ratio of weights:updates"
    (around 1e-3 is healthy).

    Args:
        norms: (steps, 2P), a row of `step_norms` per step.

    Returns:
        A float64 tensor (P,) on the same device.
    """
    weights, updates = norms.double().chunk(2, dim=1)
    return torch.where(weights > 0, updates / weights, 0.0).mean(dim=0)


def _dead(act: torch.Tensor) -> torch.Tensor:
    """Share of units (features; filters of a conv map) that output 0 for every example
    of the batch: dead ReLUs (worker/models.py `dead_fraction`, on the device)."""
    alive = act > 0
    if alive.dim() > 2:
        alive = alive.flatten(2).any(dim=2)
    return 1.0 - alive.any(dim=0).double().mean()


class EpochStats:
    """One epoch's statistics on the device: step losses, the weight and update norms of
    every step, and the hidden layers of one forward and backward pass."""

    def __init__(self, model: nn.Module) -> None:
        self.names = [name for name, _ in model.named_parameters()]
        self._pending: list[torch.Tensor] = []  # step losses not yet read by the host
        self._norms: list[torch.Tensor] = []
        self._layers: list[dict[str, torch.Tensor]] = []

    def watch_layers(self, model: nn.Module) -> list[Any]:
        """Hooks recording each ReLU's output mean, std and dead fraction and its
        gradient's std in the next forward and backward pass; the caller removes the
        returned handles."""
        self._layers = []
        handles = []
        for relu in (m for m in model.modules() if isinstance(m, nn.ReLU)):

            def hook(_m: nn.Module, _i: Any, out: torch.Tensor) -> None:
                act = out.detach()
                entry = {"act_mean": act.mean(), "act_std": act.std(), "dead_fraction": _dead(act)}
                self._layers.append(entry)
                out.register_hook(lambda g: entry.__setitem__("grad_std", g.detach().std()))

            handles.append(relu.register_forward_hook(hook))
        return handles

    def add_step(self, loss: torch.Tensor, norms: torch.Tensor) -> None:
        """Record one step's loss (0-d) and `step_norms` (2P,), both left on the device."""
        self._pending.append(loss.detach().double())
        self._norms.append(norms)

    def check_due(self) -> bool:
        """Whether enough losses are pending for a divergence check."""
        return len(self._pending) >= DIVERGENCE_CHECK_STEPS

    def pending_losses(self) -> list[float]:
        """The step losses since the last read, moved to the host in one transfer."""
        losses, self._pending = to_host(self._pending), []
        return losses

    def finish(self) -> tuple[list[float], dict[str, float], list[dict[str, float]]]:
        """Everything still on the device, in one transfer: the pending step losses, the
        mean update ratio per parameter array (none before a step), the layers numbered
        from 1."""
        parts = list(self._pending)
        if self._norms:
            parts.append(mean_update_ratios(torch.stack(self._norms)))
        parts += [value for entry in self._layers for value in entry.values()]
        values = iter(to_host(parts))  # read back in the order they were put in
        losses = [next(values) for _ in self._pending]
        ratios = {name: next(values) for name in self.names} if self._norms else {}
        layers = [
            {"layer": float(number), **{key: next(values) for key in entry}}
            for number, entry in enumerate(self._layers, start=1)
        ]
        self._pending = []
        return losses, ratios, layers
