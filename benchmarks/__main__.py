"""Every throughput and load benchmark in one run and one table, the peers run beside.

gridless against Ray Tune and Optuna on this machine, ratios measured side by side.

    pip install -e '.[bench]'
    python -m benchmarks [--quick] [--only overhead,reports,...] [--json results.json]

Parts (--only picks some, in this order): overhead (trivial trials/s; Ray Tune with
reuse_actors=True and with its default beside it), reports (one master, 64 and 256
simulated workers, SQLite and PostgreSQL 15, with the client's own ceiling), dashboard
(trial list and study detail p95 while 256 workers report), studypage (the study page
drawn in headless Chromium with 20,000 trials, and its table's next page), memory (the master's RSS
with 100,000 trials and 1,000,000 epoch rows), scale (report cost and trial-list
latency at 100,000 trials), quality (search quality at an equal epoch budget over
seeds, two problems), numpy (NumPy vs Torch samples/s and the share of the BLAS peak),
search (mean regret at 30 and 100 evaluations on HPOBench-MLP, HPOLib,
NAS-Bench-201 and the multi-fidelity Hartmann functions against random search, TPE and
ASHA; benchmarks/search_quality.py), shifted (the digits study with the
learning-rate range above and below the good region, over 10 seeds;
benchmarks/shifted_range.py), robust (training code and objectives the project is not
tuned on, each with wide, too-low and too-high ranges, against Optuna's TPE, GP and
random samplers; benchmarks/robust_search.py). search, shifted and robust also print
their own tables.
Targets are goals, not assertions; the last column says whether each was met.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

Row = tuple[str, str, str, str, str, str]
PARTS = (
    "overhead",
    "reports",
    "dashboard",
    "studypage",
    "memory",
    "scale",
    "quality",
    "numpy",
    "search",
    "shifted",
    "robust",
)


def _fmt(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


def _met(ok: bool) -> str:
    return "met" if ok else "missed"


def overhead(quick: bool, raw: dict[str, Any]) -> list[Row]:
    from benchmarks import peers

    trivial = 60 if quick else 200
    over = peers.overhead(trivial, 10 if quick else 40, trivial)
    raw["overhead"] = over
    g, reuse, default = over["gridless"], over["Ray Tune (reuse_actors)"], over["Ray Tune"]
    vs_optuna, vs_reuse, vs_default = g / over["Optuna"], g / reuse, g / default
    return [
        (
            "trivial trials/s (Ray Tune: reuse_actors=True; Optuna: SQLite)",
            _fmt(g),
            _fmt(reuse, 2),
            _fmt(over["Optuna"]),
            ">= 4x Optuna, >= 2x Ray Tune",
            f"{vs_optuna:.1f}x, {vs_reuse:.1f}x: {_met(vs_optuna >= 4)}, {_met(vs_reuse >= 2)}",
        ),
        (
            "trivial trials/s (Ray Tune: its default, reuse_actors=False)",
            _fmt(g),
            _fmt(default, 2),
            "-",
            ">= 10x Ray Tune",
            f"{vs_default:.0f}x: {_met(vs_default >= 10)}",
        ),
    ]


BATCH = 10  # epochs a request in the batched runs


def reports(quick: bool, raw: dict[str, Any]) -> list[Row]:
    from benchmarks.master_process import postgres_available
    from benchmarks.report_load import epochs_for, report_throughput
    from benchmarks.simulated_workers import client_ceiling

    counts = (64, 256)
    # Long enough for a steady rate: the null server answers 5,000 to 10,000 a second.
    ceiling = {w: client_ceiling(w, epochs_for(w, quick, reports=20_000)) for w in counts}
    backends = ["sqlite"] + (["postgres"] if postgres_available() else [])
    floor = 1_000 if quick else 3_000
    # One epoch a request (a worker whose epochs are slower than a round trip), and ten
    # (what worker/sender.py batches when they are faster): the target row is batched.
    plan = [("sqlite", 64, 1)] + [(b, w, BATCH) for b in backends for w in counts]
    runs = {
        (b, w, n): report_throughput(
            b,
            w,
            epochs_for(w, quick),
            floor_requests=floor if b == "sqlite" and n == BATCH else 0,
            batch=n,
        )
        for b, w, n in plan
    }
    raw["reports"] = {
        "ceiling": {str(w): c for w, c in ceiling.items()},
        "runs": list(runs.values()),
    }
    rows: list[Row] = [
        (
            "client ceiling: null server, 64 / 256 workers (reports/s)",
            " / ".join(_fmt(ceiling[w]["reports_per_s"], 0) for w in counts),
            "-",
            "-",
            "(reported)",
            "this client's limit, on one core",
        ),
        (
            "master HTTP floor: GET /health, 64 / 256 connections (req/s)",
            " / ".join(
                _fmt(runs["sqlite", w, BATCH]["floor"]["requests_per_s"], 0) for w in counts
            ),
            "-",
            "-",
            "(reported)",
            "p50 "
            + " / ".join(f"{runs['sqlite', w, BATCH]['floor']['p50_ms']:.0f}" for w in counts)
            + " ms, no database",
        ),
    ]
    for (backend, workers, batch), r in runs.items():
        rate, p99 = r["reports_per_s"], r["p99_ms"]
        bound = "client" if rate >= 0.7 * ceiling[workers]["reports_per_s"] else "master"
        name = "SQLite" if backend == "sqlite" else "PostgreSQL"
        name += ", 1 a request" if batch == 1 else f", {batch} a request"
        cell = f"{rate:,.0f}/s; {r['p50_ms']:.0f} / {p99:.0f} ms"
        if backend == "sqlite" and workers == 64 and batch == BATCH:
            target = ">= 2,000/s, p99 < 50 ms"
            result = f"{rate / 2000:.2f}x, p99 {p99:.0f} ms: {_met(rate >= 2000 and p99 < 50)}"
        else:
            target, result = "(reported)", f"{rate / 2000:.2f}x of 2,000/s"
        rows.append(
            (
                f"reports/s; p50 / p99, {workers} workers, {name}",
                cell,
                "-",
                "-",
                target,
                f"{result} ({bound}-bound)",
            )
        )
    if "postgres" not in backends:
        rows.append(("reports/s, PostgreSQL", "not run", "-", "-", "(reported)", "no PG 15"))
    stored = sum(r["stored"] for r in runs.values())
    expected = sum(r["expected"] for r in runs.values())
    errors = sum(r["server_errors"] for r in runs.values())
    rows.append(
        (
            f"reports stored exactly once, {len(runs)} runs",
            f"{stored:,} of {expected:,}; {errors} 5xx",
            "-",
            "-",
            "all, no 5xx",
            _met(all(r["once"] for r in runs.values())),
        )
    )
    return rows


def dashboard(quick: bool, raw: dict[str, Any]) -> list[Row]:
    from benchmarks.report_load import epochs_for, report_throughput

    workers = 256
    # Long enough for a few hundred polls of each query at today's rates.
    epochs = epochs_for(workers, quick, reports=4_000 if quick else 16_000)
    r = report_throughput("sqlite", workers, epochs, dashboard=True, batch=BATCH)
    raw["dashboard"] = r
    rows: list[Row] = []
    for name, q in r["dashboard"].items():
        failed = {code: n for code, n in q["statuses"].items() if code != "200"}
        total = sum(q["statuses"].values())
        note = f" ({', '.join(f'{n} x {c}' for c, n in failed.items())} of {total})"
        rows.append(
            (
                f"{name} p95 while {workers} workers report, SQLite (ms)",
                f"{q['p95_ms']:.0f} (p50 {q['p50_ms']:.0f})",
                "-",
                "-",
                "< 200 ms",
                _met(q["p95_ms"] < 200 and not failed) + (note if failed else ""),
            )
        )
    rows.append(
        (
            f"the workers' answers meanwhile ({r['reports']:,} reports)",
            f"{r['reports_per_s']:,.0f}/s; "
            + ", ".join(f"{n} x {c}" for c, n in r["statuses"].items()),
            "-",
            "-",
            "no 5xx",
            _met(r["once"]),
        )
    )
    return rows


def studypage(quick: bool, raw: dict[str, Any]) -> list[Row]:
    from benchmarks.dashboard_load import dashboard_load

    trials = 5_000 if quick else 20_000
    r = dashboard_load(trials, loads=2 if quick else 3)
    raw["studypage"] = r
    return [
        (
            f"study page drawn in Chromium, {trials:,} trials (ms)",
            f"{r['load_median_ms']:,.0f} (points: {r['points_kb']:,.0f} kB, "
            f"{r['points_request_ms']:.0f} ms)",
            "-",
            "-",
            "< 2,000 ms",
            _met(r["load_median_ms"] < 2000),
        ),
        (
            f"trial table next page / sort by a parameter, {trials:,} trials (ms)",
            f"{r['next_page_median_ms']:.0f} / {r['sort_ms']:.0f}",
            "-",
            "-",
            "(reported)",
            f"{r['lines']:,} lines in the parallel plot",
        ),
    ]


def memory(quick: bool, raw: dict[str, Any]) -> list[Row]:
    from benchmarks.master_memory import master_memory

    m = master_memory(10_000 if quick else 100_000, 10)
    raw["memory"] = m
    q = m["queries"]
    return [
        (
            f"master RSS, {m['trials']:,} trials, {m['epoch_rows']:,} epoch rows (MB)",
            f"{m['rss_mb']:.0f} (peak {m['peak_mb']:.0f}; {m['rss_empty_mb']:.0f} empty)",
            "-",
            "-",
            "< 500 MB",
            _met(m["rss_mb"] < 500),
        ),
        (
            f"study detail / trial list p50 at {m['trials']:,} trials, idle (ms)",
            f"{q['study detail']:.0f} / {q['trial list']:.0f}",
            "-",
            "-",
            "(reported)",
            f"warnings {q['warnings']:.0f} ms",
        ),
    ]


def scale(quick: bool, raw: dict[str, Any]) -> list[Row]:
    from benchmarks import master_load

    trials = 20_000 if quick else 100_000
    load = {"small": master_load.at_scale(1_000), "large": master_load.at_scale(trials)}
    raw["scale"] = load
    cost = load["large"]["report_ms"] / load["small"]["report_ms"]
    return [
        (
            f"report ms at {trials:,} / 1,000 trials",
            f"{load['large']['report_ms']:.1f} / {load['small']['report_ms']:.1f}",
            "-",
            "-",
            "<= 1.5x",
            f"{cost:.2f}x: {_met(cost <= 1.5)}",
        ),
        (
            f"trial list p95 at {trials:,} trials (ms)",
            f"{load['large']['query_p95_ms']:.0f}",
            "-",
            "-",
            "< 200 ms",
            _met(load["large"]["query_p95_ms"] < 200),
        ),
    ]


def quality(quick: bool, raw: dict[str, Any]) -> list[Row]:
    from benchmarks import peers

    seeds = 2 if quick else 5
    found = peers.quality(seeds, 32 if quick else 64)
    raw["quality"] = found
    rows: list[Row] = []
    for problem, tools in found.items():
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
                f"{g - peers_best:+.4f}: {_met(g >= peers_best)}",
            )
        )
    return rows


def numpy(quick: bool, raw: dict[str, Any]) -> list[Row]:
    from benchmarks import numpy_vs_torch

    nt = numpy_vs_torch.measure(epochs=5 if quick else 20)
    raw["numpy_vs_torch"] = nt
    return [
        (
            "NumPy / Torch samples/s",
            f"{nt['numpy']:,.0f} / {nt['torch']:,.0f}",
            "-",
            "-",
            ">= 0.8x",
            f"{nt['ratio']:.2f}x: {_met(nt['ratio'] >= 0.8)}",
        ),
        (
            "NumPy share of BLAS peak",
            f"{nt['numpy_gflops']:.2f} of {nt['peak_gflops']:.1f} GFLOP/s",
            "-",
            "-",
            "(reported)",
            f"{100 * nt['peak_fraction']:.1f}%",
        ),
    ]


def search(quick: bool, raw: dict[str, Any]) -> list[Row]:
    from benchmarks import search_quality

    found = search_quality.run(quick=quick)
    raw["search"] = found
    raw.setdefault("tables", {})["search quality: mean regret"] = search_quality.table(found)
    return search_quality.summary_rows(found)


def shifted(quick: bool, raw: dict[str, Any]) -> list[Row]:
    from benchmarks import shifted_range

    found = shifted_range.run_cases(3 if quick else 10)
    raw["shifted"] = found
    raw.setdefault("tables", {})["digits shifted ranges"] = shifted_range.table(found)
    return shifted_range.summary_rows(found)


def robust(quick: bool, raw: dict[str, Any]) -> list[Row]:
    from benchmarks import robust_search

    found = robust_search.run(quick=quick)
    raw["robust"] = found
    tables = raw.setdefault("tables", {})
    tables["robust search: shifted ranges"] = robust_search.robust_table(found)
    tables["robust search: mean regret"] = robust_search.regret_table(found)
    return robust_search.summary_rows(found)


TITLES: dict[str, tuple[str, Callable[[bool, dict[str, Any]], list[Row]]]] = {
    "overhead": ("system overhead (trivial trials)", overhead),
    "reports": ("one master, 64 and 256 simulated workers", reports),
    "dashboard": ("dashboard queries while 256 workers report", dashboard),
    "studypage": ("the study page of a large study in a browser", studypage),
    "memory": ("the master's memory with a large study", memory),
    "scale": ("report cost and trial list at scale", scale),
    "quality": ("search quality at an equal epoch budget", quality),
    "numpy": ("NumPy vs Torch", numpy),
    "search": ("search quality on tabular and multi-fidelity benchmarks (regret)", search),
    "shifted": ("digits with the learning-rate range shifted, over seeds", shifted),
    "robust": ("robust search: wide, too-low and too-high ranges on new problems", robust),
}


def run(quick: bool, parts: tuple[str, ...] = PARTS) -> tuple[list[Row], dict[str, Any]]:
    raw: dict[str, Any] = {"quick": quick}
    rows: list[Row] = []
    t0 = time.perf_counter()
    for i, part in enumerate(parts, 1):
        title, measure = TITLES[part]
        print(f"{i}/{len(parts)} {title}", flush=True)
        start = time.perf_counter()
        rows += measure(quick, raw)
        raw.setdefault("part_seconds", {})[part] = time.perf_counter() - start
    raw["seconds"] = time.perf_counter() - t0
    return rows, raw


def table(rows: list[Row]) -> str:
    head = ("measure", "gridless", "Ray Tune", "Optuna", "target", "result")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _parts(text: str) -> tuple[str, ...]:
    chosen = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in chosen if p not in PARTS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"parts are a comma-separated subset of {','.join(PARTS)}, but got {text!r}"
        )
    return tuple(p for p in PARTS if p in chosen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer trials, seeds and epochs")
    parser.add_argument("--only", type=_parts, default=PARTS, help=f"some of {','.join(PARTS)}")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    rows, raw = run(args.quick, args.only)
    print()
    print(table(rows))
    note = (
        "ranges are [min, max] over seeds; ep = epochs trained" if "quality" in args.only else ""
    )
    print(f"\n({raw['seconds']:.0f} s{'; ' + note if note else ''})")
    for title, text in raw.get("tables", {}).items():
        print(f"\n{title}\n\n{text}")
    if args.json:
        args.json.write_text(json.dumps(raw, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
