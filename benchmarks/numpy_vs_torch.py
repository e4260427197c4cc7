"""NumPy vs Torch CPU training speed on the same MLP, batch size and data (issue 3).

Prints samples per second for each trainer and the NumPy/Torch ratio, measured in the
same process, so machine noise affects both alike. Target: NumPy >= 0.8x Torch.

    python -m benchmarks.numpy_vs_torch [--epochs 20] [--hidden 100] [--batch 64] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from threadpoolctl import threadpool_limits

from worker.data import load_dataset
from worker.trainer import make_trainer


def samples_per_second(model: str, epochs: int, params: dict[str, object]) -> float:
    """Median over epochs of training samples per second (the first epoch is warm-up)."""
    trainer = make_trainer(model, "digits", params, seed=0)
    n = len(load_dataset("digits").y_train)
    trainer.train_epoch()
    rates = []
    for _ in range(epochs):
        start = time.perf_counter()
        trainer.train_epoch()  # includes the per-epoch evaluation both trainers do
        rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--hidden", type=int, default=100)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="BLAS / torch threads")
    args = parser.parse_args()
    params = {"hidden": args.hidden, "batch_size": args.batch, "update": "momentum"}
    torch.set_num_threads(args.threads)
    with threadpool_limits(limits=args.threads):
        numpy_rate = samples_per_second("numpy.mlp", args.epochs, params)
        torch_rate = samples_per_second("torch.mlp", args.epochs, params)
    print(f"MLP 64-{args.hidden}-10, batch {args.batch}, {args.threads} thread(s), digits")
    print(f"{'trainer':<10} {'samples/s':>12}")
    print(f"{'numpy':<10} {numpy_rate:>12,.0f}")
    print(f"{'torch':<10} {torch_rate:>12,.0f}")
    print(f"numpy / torch = {numpy_rate / torch_rate:.2f}x (target >= 0.80x)")


if __name__ == "__main__":
    main()
