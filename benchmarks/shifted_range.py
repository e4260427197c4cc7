"""The digits shifted-range case: gridless coarse-to-fine with the learning-rate
range two decades above and two decades below the good region, against the wide range,
over seeds.

    python -m benchmarks.shifted_range [--quick] [--seeds 10] [--budget 64] [--json FILE]

It extends the `quality` part of `python -m benchmarks` (benchmarks/peers.py: the NumPy
MLP on digits, SGD with momentum, learning rate, L2 strength and width searched, three
stages spending 64 epochs, 10 epochs at most a trial), whose good learning rates lie at
about 0.05 to 1:

- wide: peers.WIDE, learning rate in [1e-4, 10];
- below: peers.SHIFTED, [1e-6, 1e-3] (its top 1.7 decades under 0.05);
- above: [1e2, 1e5] (its bottom two decades over 1; every such trial diverges).

Per case: median, min and max of the best validation accuracy over seeds, the seeds
within 2 points of the wide range's median (the target: all of them), the seeds that
ended with no scored trial (the target: none), and the last stage's learning-rate range.
All studies go to one in-process master (SQLite) at once, run by 2 Ray workers on a
2-CPU local Ray.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from benchmarks.peers import SHIFTED, WIDE

ABOVE = {**WIDE, "learning_rate": {"log_uniform": [1e2, 1e5]}}
CASES: dict[str, dict[str, Any]] = {"wide": WIDE, "below": SHIFTED, "above": ABOVE}
WITHIN = 0.02  # "within 2 points" of the wide range's median
WORKERS = 2


def study_spec(space: dict[str, Any], seed: int, budget: int, case: str) -> dict[str, Any]:
    """The `quality` part's gridless study (benchmarks/peers.py), for one case and seed."""
    from benchmarks.peers import _stages

    return {
        "name": f"shifted-{case}-{seed}",
        "model": "numpy.mlp",
        "dataset": "digits",
        "seed": seed,
        "space": space,
        "stages": _stages(budget),
    }


def _outcome(service: Any, study_id: int) -> dict[str, Any]:
    """A finished study's best score (None: no scored trial), epochs, ranges and flags."""
    from sqlalchemy import func, select

    from gridless.common.db import EpochMetricRow, TrialRow, session_scope

    rows, _ = service.ranked_trials(study_id, limit=1, offset=0)
    best = rows[0].best_score if rows else None
    stages = service.stages(study_id)
    with session_scope(service.sessions) as s:
        query = select(func.count()).select_from(EpochMetricRow)
        query = query.join(TrialRow, EpochMetricRow.trial_id == TrialRow.id)
        epochs = s.scalar(query.where(TrialRow.study_id == study_id)) or 0
        states = dict(
            s.execute(
                select(TrialRow.state, func.count())
                .where(TrialRow.study_id == study_id)
                .group_by(TrialRow.state)
            ).all()
        )
    return {
        "best": best,
        "epochs": int(epochs),
        "stages": len(stages),
        "lr_ranges": [next(iter(st.space["learning_rate"].values())) for st in stages],
        "flags": len(service.raised_flags(study_id)),
        "trial_states": {str(k): int(v) for k, v in states.items()},
        "state": service.get_study(study_id).state,
    }


def run_cases(
    seeds: int, budget: int = 64, cases: dict[str, dict[str, Any]] = CASES
) -> dict[str, list[dict[str, Any]]]:
    """{case: [outcome per seed]}, every study on one master with 2 Ray workers."""
    from benchmarks.peers import _Master, start_ray

    start_ray(WORKERS)
    with tempfile.TemporaryDirectory() as root, _Master(Path(root)) as master:
        service = master.app.state.service
        keys = [(case, seed) for case in cases for seed in range(seeds)]
        specs = [
            study_spec(space, seed, budget, case)
            for case, space in cases.items()
            for seed in range(seeds)
        ]
        ids = dict(zip(keys, master.run_all(specs, WORKERS, what="digits"), strict=True))
        return {
            case: [_outcome(service, ids[case, seed]) for seed in range(seeds)] for case in cases
        }


def summary(found: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per case: median / min / max best score (unscored seeds count as 0), seeds within
    2 points of the wide case's median, seeds with no scored trial."""
    scores = {
        c: [o["best"] if o["best"] is not None else 0.0 for o in r] for c, r in found.items()
    }
    wide = statistics.median(scores["wide"])
    out = {}
    for case, outcomes in found.items():
        s = scores[case]
        out[case] = {
            "median": statistics.median(s),
            "min": min(s),
            "max": max(s),
            "within": sum(abs(v - wide) <= WITHIN + 1e-9 for v in s),
            "no_score": sum(o["best"] is None for o in outcomes),
            "seeds": len(s),
            "epochs": statistics.median(o["epochs"] for o in outcomes),
            "stages": max(o["stages"] for o in outcomes),
        }
    return out


def _range(r: list[float]) -> str:
    return f"[{r[0]:.2g}, {r[1]:.2g}]"


def table(found: dict[str, list[dict[str, Any]]]) -> str:
    """One Markdown table, a row per case, with the targets' verdicts."""
    summ = summary(found)
    head = [
        "lr range (stage 1)",
        "best val acc: median [min, max]",
        "within 2 pt of wide median",
        "no scored trial",
        "epochs (median)",
        "last stage's lr range (seed 0)",
        "target",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for case, s in summ.items():
        first = found[case][0]["lr_ranges"]
        met = s["within"] == s["seeds"] and s["no_score"] == 0
        lines.append(
            "| "
            + " | ".join(
                [
                    f"{case} {_range(first[0])}",
                    f"{s['median']:.4f} [{s['min']:.4f}, {s['max']:.4f}]",
                    f"{s['within']} of {s['seeds']}",
                    f"{s['no_score']} of {s['seeds']}",
                    f"{s['epochs']:.0f}",
                    _range(first[-1]),
                    "(reference)" if case == "wide" else ("met" if met else "missed"),
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def summary_rows(
    found: dict[str, list[dict[str, Any]]],
) -> list[tuple[str, str, str, str, str, str]]:
    """A row per shifted case for `python -m benchmarks`' table (measure, gridless, Ray
    Tune, Optuna, target, result)."""
    summ = summary(found)
    wide = summ["wide"]["median"]
    rows = []
    for case, s in summ.items():
        if case == "wide":
            continue
        ok = s["within"] == s["seeds"] and s["no_score"] == 0
        rows.append(
            (
                f"best val acc, digits, lr range {case} the good region, {s['seeds']} seeds",
                f"{s['median']:.4f} [{s['min']:.4f}, {s['max']:.4f}]",
                "-",
                "-",
                f"every seed within 2 pt of {wide:.4f} (wide), none unscored",
                f"{s['within']} of {s['seeds']} within, {s['no_score']} unscored: "
                + ("met" if ok else "missed"),
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 seeds")
    parser.add_argument("--seeds", type=int, help="seeds a case (10)")
    parser.add_argument("--budget", type=int, default=64, help="training epochs a study")
    parser.add_argument("--json", type=Path, help="also write every seed's outcome here")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    t0 = time.perf_counter()
    found = run_cases(args.seeds or (3 if args.quick else 10), args.budget)
    print(table(found))
    print(f"\n({time.perf_counter() - t0:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(found, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
