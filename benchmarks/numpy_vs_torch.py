"""NumPy vs Torch CPU training speed on the same MLP, batch size and data.

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

from gridless.worker.data import load_dataset
from gridless.worker.trainer import make_trainer


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


def blas_peak_gflops(n: int = 1024, repeats: int = 5) -> float:
    """The best float64 GFLOP/s of a large square matmul: this machine's BLAS peak at the
    current thread limit."""
    import numpy as np

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n)), rng.standard_normal((n, n))
    a @ b  # warm-up
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - start) / 1e9)
    return best


def mlp_flops_per_sample(features: int = 64, hidden: int = 100, classes: int = 10) -> float:
    """Multiply-adds of a two-layer MLP's forward (2 FLOPs each) and backward (twice
    the forward) pass for one training sample."""
    return 6.0 * (features * hidden + hidden * classes)


def measure(
    epochs: int = 20, hidden: int = 100, batch: int = 64, threads: int = 1
) -> dict[str, float]:
    """Samples/s of both trainers, their ratio, and NumPy's share of the BLAS peak."""
    params = {"hidden": hidden, "batch_size": batch, "update": "momentum"}
    torch.set_num_threads(threads)
    with threadpool_limits(limits=threads):
        numpy_rate = samples_per_second("numpy.mlp", epochs, params)
        torch_rate = samples_per_second("torch.mlp", epochs, params)
        peak = blas_peak_gflops()
    achieved = numpy_rate * mlp_flops_per_sample(hidden=hidden) / 1e9
    return {
        "numpy": numpy_rate,
        "torch": torch_rate,
        "ratio": numpy_rate / torch_rate,
        "peak_gflops": peak,
        "numpy_gflops": achieved,
        "peak_fraction": achieved / peak,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--hidden", type=int, default=100)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="BLAS / torch threads")
    args = parser.parse_args()
    r = measure(args.epochs, args.hidden, args.batch, args.threads)
    print(f"MLP 64-{args.hidden}-10, batch {args.batch}, {args.threads} thread(s), digits")
    print(f"{'trainer':<10} {'samples/s':>12}")
    print(f"{'numpy':<10} {r['numpy']:>12,.0f}")
    print(f"{'torch':<10} {r['torch']:>12,.0f}")
    print(f"numpy / torch = {r['ratio']:.2f}x (target >= 0.80x)")
    print(
        f"numpy: {r['numpy_gflops']:.2f} GFLOP/s of a {r['peak_gflops']:.1f} GFLOP/s BLAS peak "
        f"({100 * r['peak_fraction']:.1f}%)"
    )


if __name__ == "__main__":
    main()
