"""`trial.watch(model, optimizer)`: the seed's babysitting monitors on any torch module.

The same statistics the built-in models report, gathered with torch's own hooks:

- the update:weight ratio of every parameter tensor, from the optimizer's actual step
  (step pre- and post-hooks: ||w_after - w_before|| / ||w_before||);
- the mean and std of each hidden layer's activations, and the std of their gradients
  (a forward hook on the layer and a hook on its output tensor, which stays correct for
  in-place activations where a module backward hook would fail);
- the first convolution's filters, for the seed's "first-layer visualizations".

Hooks fire on one training step in `every` (the first step included), so the cost stays a
few percent of a step; numbers stay device tensors until `collect()` moves one epoch's
worth to the host at once. `close()` removes every hook.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from gridless.worker.training import first_layer_snapshot

__all__ = ["ACTIVATIONS", "Watch", "hidden_layers"]

# Leaf modules whose outputs are a hidden layer's activations.
ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Tanh,
    nn.Sigmoid,
    nn.Hardtanh,
    nn.Softplus,
)


def _leaves(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    for name, module in model.named_modules():
        if not any(True for _ in module.children()):
            yield name, module


def hidden_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The layers whose outputs are watched: the activation modules, in order; for a model
    that applies its activations functionally (`F.relu`), its parameterized leaf layers
    but the last (the output head)."""
    leaves = list(_leaves(model))
    activations = [(n, m) for n, m in leaves if isinstance(m, ACTIVATIONS)]
    if activations:
        return activations
    weighted = [(n, m) for n, m in leaves if any(True for _ in m.parameters(recurse=False))]
    return weighted[:-1] if len(weighted) > 1 else weighted


class Watch:
    """The monitors of one model and its optimizer; `trial.watch` makes one.

    Args:
        model: any `torch.nn.Module`.
        optimizer: the optimizer that steps it (None: no update ratios).
        every: sample one training step in `every`.
    """

    def __init__(
        self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None, *, every: int = 10
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"trial.watch: model must be a torch.nn.Module, but got {model!r}")
        if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(
                f"trial.watch: optimizer must be a torch.optim.Optimizer, but got {optimizer!r}"
            )
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"trial.watch: every must be an integer >= 1, but got {every!r}")
        self.model, self.optimizer, self.every = model, optimizer, every
        self.steps = 0  # optimizer steps seen
        self._layers = hidden_layers(model)
        self._named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self._before: list[torch.Tensor] | None = None
        self._ratios: dict[str, list[torch.Tensor]] = {}
        # per layer: [act_mean, act_std, grad_std] tensors of the sampled steps
        self._acts: dict[int, dict[str, list[torch.Tensor]]] = {}
        self._recorded: dict[int, int] = {}  # layer -> the step its forward was recorded
        self._handles: list[Any] = []
        for index, (_, layer) in enumerate(self._layers):
            self._handles.append(layer.register_forward_hook(self._forward_hook(index)))
        if optimizer is not None:
            self._handles.append(optimizer.register_step_pre_hook(self._before_step))
            self._handles.append(optimizer.register_step_post_hook(self._after_step))

    # -- hooks ---------------------------------------------------------------------------

    def _sampled(self) -> bool:
        return self.steps % self.every == 0

    def _forward_hook(self, index: int) -> Any:
        def hook(module: nn.Module, _inputs: Any, out: Any) -> None:
            # training forwards of a sampled step only (not evaluation under no_grad)
            if not (module.training and torch.is_grad_enabled() and self._sampled()):
                return
            if not isinstance(out, torch.Tensor) or not out.is_floating_point():
                return
            if self._recorded.get(index) == self.steps:
                return  # several forwards in one step (gradient accumulation): the first
            self._recorded[index] = self.steps
            entry = self._acts.setdefault(index, {"act_mean": [], "act_std": [], "grad_std": []})
            detached = out.detach()
            entry["act_mean"].append(detached.mean())
            entry["act_std"].append(detached.std() if detached.numel() > 1 else detached.abs())
            if out.requires_grad:
                out.register_hook(  # type: ignore[no-untyped-call]
                    lambda grad: entry["grad_std"].append(grad.detach().std())
                )

        return hook

    def _before_step(self, *_: Any) -> None:
        if self._sampled():
            self._before = [p.detach().clone() for _, p in self._named]

    def _after_step(self, *_: Any) -> None:
        before, self._before = self._before, None
        if before is not None:
            with torch.no_grad():
                for (name, p), old in zip(self._named, before, strict=True):
                    norm = old.norm()  # a zero tensor (a fresh bias) counts 0, as built-in
                    ratio = torch.where(norm > 0, (p.detach() - old).norm() / norm, 0.0)
                    self._ratios.setdefault(name, []).append(ratio)
        self.steps += 1

    # -- what the trial reports --------------------------------------------------------------

    def collect(self) -> dict[str, Any]:
        """This epoch's statistics, in the built-in models' format (`update_ratio`,
        `layers`, `learning_rate`, `first_layer`), moved to the host in one transfer;
        the accumulators start over."""
        keys: list[tuple[str, Any]] = []
        values: list[torch.Tensor] = []
        for name, ratios in self._ratios.items():
            keys.append(("ratio", name))
            values.append(torch.stack(ratios).float().mean().cpu())
        for index, entry in sorted(self._acts.items()):
            for key, series in entry.items():
                if series:
                    keys.append((key, index))
                    values.append(torch.stack(series).float().mean().cpu())
        host = torch.stack(values).tolist() if values else []
        stats: dict[str, Any] = {}
        ratios_out: dict[str, float] = {}
        layers: dict[int, dict[str, Any]] = {}
        for (key, where), value in zip(keys, host, strict=True):
            if key == "ratio":
                ratios_out[str(where)] = value
            else:
                index = int(where)
                layer = layers.setdefault(
                    index, {"layer": float(index + 1), "name": self._layers[index][0]}
                )
                layer[key] = value
        if ratios_out:
            stats["update_ratio"] = ratios_out
        if layers:
            stats["layers"] = [layers[i] for i in sorted(layers)]
        if self.optimizer is not None and self.optimizer.param_groups:
            stats["learning_rate"] = float(self.optimizer.param_groups[0]["lr"])
        conv = next((m for m in self.model.modules() if isinstance(m, nn.Conv2d)), None)
        if conv is not None:
            snapshot = first_layer_snapshot(
                conv.weight.detach().cpu().numpy(), None, units_first=True
            )
            if snapshot is not None:
                stats["first_layer"] = snapshot
        self._ratios, self._acts = {}, {}
        return stats

    def close(self) -> None:
        """Remove every hook (the runtime calls it when the trial ends)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
