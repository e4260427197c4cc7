"""What `trial.watch(model, optimizer)` costs a training step.

    python -m benchmarks.watch [--steps 300] [--rounds 7] [--every 10]

Times the same training steps of two models with and without the monitors, alternating
the two in each round so drift on a shared machine hits both alike: the small CNN of
`examples/pytorch/train.py` (batch 64 of 8x8 digits) and an 8-layer, 256-wide ReLU MLP
(batch 128). Prints the median time per step of each and the overhead in percent; also
the overhead with every step sampled (`every=1`), the worst case. The target:
a few percent at the default `every=10`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from gridless.worker.watch import Watch

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "pytorch"


def _cnn() -> tuple[nn.Module, Callable[[], tuple[torch.Tensor, torch.Tensor]]]:
    sys.path.insert(0, str(EXAMPLES))
    from train import SmallCNN

    x, y = torch.randn(64, 1, 8, 8), torch.randint(0, 10, (64,))
    return SmallCNN(64, 0.1), lambda: (x, y)


def _mlp() -> tuple[nn.Module, Callable[[], tuple[torch.Tensor, torch.Tensor]]]:
    layers: list[nn.Module] = []
    for fan_in in (64,) + (256,) * 7:
        layers += [nn.Linear(fan_in, 256), nn.ReLU()]
    x, y = torch.randn(128, 64), torch.randint(0, 10, (128,))
    return nn.Sequential(*layers, nn.Linear(256, 10)), lambda: (x, y)


def _seconds_per_step(
    model: nn.Module,
    batch: Callable[[], tuple[torch.Tensor, torch.Tensor]],
    steps: int,
    every: int,
) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    watch = Watch(model, optimizer, every=every) if every else None
    model.train()
    start = time.perf_counter()
    for _ in range(steps):
        x, y = batch()
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    if watch is not None:
        watch.collect()  # the epoch's one transfer counts too
        watch.close()
    return (time.perf_counter() - start) / steps


def measure(steps: int = 300, rounds: int = 7, every: int = 10) -> dict[str, Any]:
    """Median seconds per step without and with the monitors, per model."""
    torch.manual_seed(0)
    results: dict[str, Any] = {}
    for name, make in (("examples/pytorch CNN", _cnn), ("8x256 ReLU MLP", _mlp)):
        model, batch = make()
        _seconds_per_step(model, batch, steps // 5 or 1, 0)  # warm up
        timings: dict[int, list[float]] = {0: [], every: [], 1: []}
        for _ in range(rounds):
            for setting in timings:
                timings[setting].append(_seconds_per_step(model, batch, steps, setting))
        base = statistics.median(timings[0])
        results[name] = {
            "plain_ms": 1000 * base,
            "watched_ms": 1000 * statistics.median(timings[every]),
            "every_step_ms": 1000 * statistics.median(timings[1]),
        }
        results[name]["overhead_pct"] = 100 * (results[name]["watched_ms"] / (1000 * base) - 1)
        results[name]["every_step_pct"] = 100 * (
            results[name]["every_step_ms"] / (1000 * base) - 1
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--every", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)  # one worker's share on a 2-core machine
    results = measure(args.steps, args.rounds, args.every)
    print(f"trial.watch overhead per training step (torch {torch.__version__}, 1 thread)")
    print(
        f"{'model':24} {'plain':>9} {'every=' + str(args.every):>10} {'+%':>6} "
        f"{'every=1':>9} {'+%':>6}"
    )
    for name, r in results.items():
        print(
            f"{name:24} {r['plain_ms']:7.3f}ms {r['watched_ms']:8.3f}ms "
            f"{r['overhead_pct']:+5.1f}% {r['every_step_ms']:7.3f}ms {r['every_step_pct']:+5.1f}%"
        )


if __name__ == "__main__":
    main()
