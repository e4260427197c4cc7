"""An in-process harness for search-quality experiments: the master's real claim, start,
report and finish code (`TrialProtocol` over a SQLite file: stages, narrowing, border
walks, the median rule and the default sampler all as a study gets them), driven by
`workers` simulated workers interleaved in one thread, without Ray or HTTP.

    python -m benchmarks.sampler_harness [--problems branin,hartmann6,hpobench] [--repeats 3]
        [--budgets 30,100] [--peers TPE,random,GP] [--samplers tpe,random]

It answers "what regret does the gridless default reach on this objective" in seconds
rather than the minutes a Ray run takes, so a sampler change can be compared against
Optuna's samplers (plain, one trial an evaluation at full fidelity, on the full range)
in the same process. Workers finish in turn (the oldest trial first), so with 2 workers
one trial is always out while the model suggests the next: its constant liar matters.
Before each claim the harness lets the sampler's preparer finish (`settle`), as a real
trial, longer than a suggestion, would: the regret does not depend on this machine's load.

`run_study(spec, objective)` is the reusable part: any spec, any objective (a function
of the parameters and the epoch returning the metric, or None for a diverged epoch).
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.search_quality import plan_stages
from benchmarks.synthetic import SYNTHETIC, SyntheticProblem

Objective = Callable[[Mapping[str, Any], int], float | None]


@dataclass
class _Slot:
    trial_id: int
    attempt: int
    params: dict[str, Any]
    epochs: int
    order: int


@dataclass
class StudyRun:
    """What a harness run leaves: every trial's parameters and final score, in order."""

    trials: list[tuple[dict[str, Any], float | None]] = field(default_factory=list)
    epochs_trained: int = 0
    seconds: float = 0.0
    builds: int = 0
    asks: int = 0


def run_study(
    spec: Mapping[str, Any],
    objective: Objective,
    *,
    workers: int = 2,
    root: Path | None = None,
) -> StudyRun:
    """Run one study to its end through the master's protocol with simulated workers."""
    from gridless.common.messages import EpochReport, FinishRequest, StartRequest
    from gridless.common.space import parse_space, sample_params
    from gridless.common.spec import parse_spec, trial_rng
    from gridless.master.app import create_app

    # on tmpfs where there is one: the commits' fsyncs are not what is measured
    shm = Path("/dev/shm")
    with tempfile.TemporaryDirectory(dir=shm if shm.is_dir() else None) as tmp:
        base = root or Path(tmp)
        (base / "store").mkdir(parents=True, exist_ok=True)
        app = create_app(database_url=f"sqlite:///{base / 'h.db'}", store_root=base / "store")
        service, protocol = app.state.service, app.state.protocol
        sampler = protocol.sampler
        study = service.create_study(parse_spec(dict(spec)))
        metric = study.metric
        out = StudyRun()
        t0 = time.perf_counter()
        slots: dict[str, _Slot] = {}
        order = 0
        try:
            while True:
                for w in range(workers):
                    worker = f"w{w}"
                    if worker in slots:
                        continue
                    sampler.settle()
                    answer = protocol.claim(worker)
                    if answer.action == "wait" and answer.assignment is None:
                        sampler.settle()
                        answer = protocol.claim(worker)
                    job = answer.assignment
                    if job is None:
                        continue
                    params = dict(job.params) if job.params is not None else None
                    if params is None:  # the worker samples, as worker/loop.py does
                        rng = trial_rng(job.seed, job.trial_number)
                        params = dict(sample_params(parse_space(job.space), rng))
                    protocol.start_trial(
                        job.trial_id,
                        StartRequest(worker_id=worker, attempt=job.attempt, params=params),
                    )
                    slots[worker] = _Slot(job.trial_id, job.attempt, params, job.epochs, order)
                    order += 1
                if not slots:
                    if service.progress(study.id).state != "running":
                        break
                    sampler.settle()
                    continue
                worker, slot = min(slots.items(), key=lambda kv: kv[1].order)
                del slots[worker]
                best: float | None = None
                state = "completed"
                for epoch in range(1, slot.epochs + 1):
                    value = objective(slot.params, epoch)
                    out.epochs_trained += 1
                    report = EpochReport(
                        worker_id=worker,
                        attempt=slot.attempt,
                        epoch=epoch,
                        metrics={metric: value},
                        diverged=value is None,
                    )
                    ack = protocol.record_report(slot.trial_id, report)
                    if value is None:
                        state = "diverged"
                        break
                    best = value if best is None else best
                    best = value if _better(study.maximize, value, best) else best
                    if ack.stop:
                        state = "stopped"
                        break
                if state in ("completed",):
                    protocol.finish_trial(
                        slot.trial_id,
                        FinishRequest(worker_id=worker, attempt=slot.attempt, state=state),
                    )
                out.trials.append((slot.params, best))
        finally:
            states = list(sampler.states.values())
            out.builds = sum(s.builds for s in states)
            out.asks = sum(s.asks for s in states)
            protocol.close()
            app.state.engine.dispose()
        out.seconds = time.perf_counter() - t0
    return out


def _better(maximize: bool, a: float, b: float) -> bool:
    return a > b if maximize else a < b


# ---------------------------------------------------------------- problems


@dataclass(frozen=True)
class HarnessProblem:
    """A problem the harness runs: its space, its objective per epoch, its regret."""

    name: str
    space: dict[str, Any]
    mode: str
    value: Callable[[Mapping[str, Any]], float]  # the true value (full fidelity)
    at: Callable[[Mapping[str, Any], int], float]  # what epoch e reports
    regret: Callable[[float], float]
    max_epochs: int = 1
    fixed: dict[str, Any] = field(default_factory=dict)


def problems(names: Sequence[str]) -> list[HarnessProblem]:
    """Synthetic functions (benchmarks/synthetic.py), mfh6 and the tabular suites' data
    sets ("hpobench" is every data set of HPOBench-MLP, "hpobench:car" one)."""
    from benchmarks.hartmann import HartmannProblem
    from benchmarks.suites import SUITES, TabularProblem, datasets

    out: list[HarnessProblem] = []
    for name in names:
        suite, _, one = name.partition(":")
        if suite in SYNTHETIC:
            syn: SyntheticProblem = SYNTHETIC[suite]
            out.append(
                HarnessProblem(
                    syn.name,
                    syn.space(),
                    "min",
                    syn.value,
                    lambda p, e, f=syn.value: f(p),  # type: ignore[misc]
                    syn.regret,
                )
            )
        elif suite == "mfh6":
            h = HartmannProblem(6)
            out.append(
                HarnessProblem(h.name, h.space(), "min", h.value, h.at, h.regret, h.max_epochs)
            )
        elif suite in SUITES:
            for d in [one] if one else datasets(suite):
                t = TabularProblem(suite, d)
                out.append(
                    HarnessProblem(
                        t.name,
                        t.space(),
                        t.mode,
                        t.value,
                        lambda p, e, f=t.value: f(p),  # type: ignore[misc]
                        t.regret,
                    )
                )
        else:
            raise SystemExit(f"unknown problem {name!r}")
    return out


def stages_for(problem: HarnessProblem, budget: int) -> list[dict[str, int]]:
    """The plan benchmarks/search_quality.py gives a user (`plan_stages`)."""
    return plan_stages(budget, problem.max_epochs)


def gridless_regret(problem: HarnessProblem, budget: int, repeat: int, sampler: str) -> float:
    """The regret of the best trial of one gridless study planned for `budget`."""
    stages = stages_for(problem, budget)
    metric = "value"
    spec = {
        "name": f"h-{repeat}",
        "train": "benchmarks.search_objectives:tabular",  # never run: the harness scores
        "metric": {"name": metric, "mode": problem.mode},
        "seed": repeat,
        "space": problem.space,
        "stages": stages,
        "sampler": sampler,
        "stop": {"max_trials": sum(s["trials"] for s in stages)},
    }
    run = run_study(spec, problem.at)
    scored = [(p, s) for p, s in run.trials if s is not None]
    if not scored:
        return math.nan
    pick = max if problem.mode == "max" else min
    best = pick(scored, key=lambda ps: float(ps[1]))
    return problem.regret(problem.value(best[0]))


def peer_regrets(
    problem: HarnessProblem, peer: str, repeat: int, budgets: Sequence[int]
) -> dict[int, float]:
    """Optuna's sampler `peer` (defaults, seeded) on the full range, one trial an
    evaluation: {budget: regret of the best of the first `budget`}."""
    import optuna

    from benchmarks.search_peers import _suggest

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    make: dict[str, Callable[[int], Any]] = {
        "random": lambda s: optuna.samplers.RandomSampler(seed=s),
        "TPE": lambda s: optuna.samplers.TPESampler(seed=s),
        "GP": lambda s: optuna.samplers.GPSampler(seed=s),
    }
    study = optuna.create_study(
        direction="maximize" if problem.mode == "max" else "minimize",
        sampler=make[peer](repeat),
    )
    study.optimize(lambda t: problem.value(_suggest(t, problem.space)), n_trials=max(budgets))
    values = [float(t.value) for t in study.trials if t.value is not None]
    pick = max if problem.mode == "max" else min
    return {b: problem.regret(pick(values[:b])) for b in budgets}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", default="branin,hartmann6")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budgets", default="30,100")
    parser.add_argument("--peers", default="TPE,random")
    parser.add_argument("--samplers", default="tpe,random")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    import logging

    logging.disable(logging.WARNING)
    budgets = [int(b) for b in args.budgets.split(",")]
    chosen = problems(args.problems.split(","))
    samplers = [s for s in args.samplers.split(",") if s]
    peers = [p for p in args.peers.split(",") if p]
    by_suite: dict[str, dict[str, dict[int, list[float]]]] = {}
    t0 = time.perf_counter()
    for problem in chosen:
        suite = by_suite.setdefault(problem.name.split("/")[0], {})
        for r in range(args.repeats):
            for sampler in samplers:
                for b in budgets:
                    regret = gridless_regret(problem, b, r, sampler)
                    suite.setdefault(f"gridless-{sampler}", {}).setdefault(b, []).append(regret)
            for peer in peers:
                for b, regret in peer_regrets(problem, peer, r, budgets).items():
                    suite.setdefault(peer, {}).setdefault(b, []).append(regret)
    at = " / ".join(f"@{b}" for b in budgets)
    print(f"| suite | method | mean regret {at} | / TPE |")
    print("|---|---|---|---|")
    for label, methods in by_suite.items():
        tpe = methods.get("TPE")
        for method, by_b in methods.items():
            means = [statistics.fmean(by_b[b]) for b in budgets]
            ratio = (
                ", ".join(
                    f"{m / statistics.fmean(tpe[b]):.2f}x" if statistics.fmean(tpe[b]) > 0 else "-"
                    for m, b in zip(means, budgets, strict=True)
                )
                if tpe
                else "-"
            )
            print(f"| {label} | {method} | {' / '.join(f'{m:.4g}' for m in means)} | {ratio} |")
    print(f"\n({args.repeats} repeats, {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
