"""Every benchmark of issue 10 in one run, one table: gridless against Ray Tune and
Optuna on this machine, ratios measured side by side.

    pip install -e '.[bench]'
    python -m benchmarks [--quick] [--json results.json]

Parts: system overhead (trivial trials/s), one master under load (reports/s, p50/p99,
report cost and trial-list latency at 100,000 trials), search quality at an equal
epoch budget over seeds (two problems), NumPy vs Torch samples/s and the share of the
BLAS peak. Targets are goals, not assertions; the last column says whether each was met.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path
from typing import Any


def _fmt(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


def run(quick: bool) -> tuple[list[tuple[str, str, str, str, str, str]], dict[str, Any]]:
    from benchmarks import master_load, numpy_vs_torch, peers

    raw: dict[str, Any] = {}
    rows: list[tuple[str, str, str, str, str, str]] = []
    t0 = time.perf_counter()

    print("1/4 system overhead (trivial trials)", flush=True)
    peers.start_ray()
    trivial = 60 if quick else 200
    tune_trivial = 10 if quick else 40
    over = {
        "gridless": peers.gridless_trivial(trivial),
        "Ray Tune": peers.tune_trivial(tune_trivial),
        "Optuna": peers.optuna_trivial(trivial),
    }
    raw["overhead"] = over
    ratio = over["gridless"] / over["Ray Tune"]
    rows.append(
        (
            "trivial trials/s",
            _fmt(over["gridless"]),
            _fmt(over["Ray Tune"], 2),
            _fmt(over["Optuna"]),
            ">= 10x Ray Tune",
            f"{ratio:.0f}x: {'met' if ratio >= 10 else 'missed'}",
        )
    )

    print("2/4 one master under load", flush=True)
    reporters, epochs = (16, 10) if quick else (32, 20)
    scale = 20_000 if quick else 100_000
    load = {
        "throughput": master_load.throughput(reporters, epochs),
        "small": master_load.at_scale(1_000),
        "large": master_load.at_scale(scale),
    }
    raw["load"] = load
    tp = load["throughput"]
    rows.append(
        (
            f"reports/s, {reporters} reporters",
            _fmt(tp["reports_per_s"], 0),
            "-",
            "-",
            ">= 2,000/s",
            f"{tp['reports_per_s'] / 2000:.2f}x of it: "
            + ("met" if tp["reports_per_s"] >= 2000 else "missed"),
        )
    )
    rows.append(
        (
            "report p50 / p99 (ms)",
            f"{tp['p50_ms']:.0f} / {tp['p99_ms']:.0f}",
            "-",
            "-",
            "p99 < 50 ms",
            "met" if tp["p99_ms"] < 50 else "missed",
        )
    )
    cost = load["large"]["report_ms"] / load["small"]["report_ms"]
    rows.append(
        (
            f"report ms at {scale:,} / 1,000 trials",
            f"{load['large']['report_ms']:.1f} / {load['small']['report_ms']:.1f}",
            "-",
            "-",
            "<= 1.5x",
            f"{cost:.2f}x: {'met' if cost <= 1.5 else 'missed'}",
        )
    )
    rows.append(
        (
            f"trial list p95 at {scale:,} trials (ms)",
            f"{load['large']['query_p95_ms']:.0f}",
            "-",
            "-",
            "< 200 ms",
            "met" if load["large"]["query_p95_ms"] < 200 else "missed",
        )
    )

    print("3/4 search quality at an equal epoch budget", flush=True)
    seeds = 2 if quick else 5
    budget = 32 if quick else 64
    quality = peers.quality(seeds, budget)
    raw["quality"] = quality
    for problem, tools in quality.items():
        g = tools["gridless"]["median"]
        peers_best = max(tools["Optuna"]["median"], tools["Ray Tune"]["median"])

        def cell(tool: str, tools: dict[str, Any] = tools) -> str:
            t = tools[tool]
            return f"{t['median']:.4f} [{t['low']:.4f}, {t['high']:.4f}] ({t['epochs']:.0f} ep)"

        rows.append(
            (
                f"best val acc, {problem}, {seeds} seeds",
                cell("gridless"),
                cell("Ray Tune"),
                cell("Optuna"),
                ">= the peers",
                f"{g - peers_best:+.4f}: {'met' if g >= peers_best else 'missed'}",
            )
        )

    print("4/4 NumPy vs Torch", flush=True)
    nt = numpy_vs_torch.measure(epochs=5 if quick else 20)
    raw["numpy_vs_torch"] = nt
    rows.append(
        (
            "NumPy / Torch samples/s",
            f"{nt['numpy']:,.0f} / {nt['torch']:,.0f}",
            "-",
            "-",
            ">= 0.8x",
            f"{nt['ratio']:.2f}x: {'met' if nt['ratio'] >= 0.8 else 'missed'}",
        )
    )
    rows.append(
        (
            "NumPy share of BLAS peak",
            f"{nt['numpy_gflops']:.2f} of {nt['peak_gflops']:.1f} GFLOP/s",
            "-",
            "-",
            "(reported)",
            f"{100 * nt['peak_fraction']:.1f}%",
        )
    )
    raw["seconds"] = time.perf_counter() - t0
    return rows, raw


def table(rows: list[tuple[str, str, str, str, str, str]]) -> str:
    head = ("measure", "gridless", "Ray Tune", "Optuna", "target", "result")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer trials, seeds and epochs")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    rows, raw = run(args.quick)
    print()
    print(table(rows))
    print(f"\n({raw['seconds']:.0f} s; ranges are [min, max] over seeds; ep = epochs trained)")
    if args.json:
        args.json.write_text(json.dumps(raw, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
