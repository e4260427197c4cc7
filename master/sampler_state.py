"""The default sampler (`sampler: tpe`): one Optuna TPE model per study, kept in the master
process, that learns from every finished trial of every stage and samples inside the
running stage's (narrowed) ranges.

- **One state per study, rebuilt lazily.** The first claim of a study in this process
  reads its finished trials from the database once (a restarted master needs no saved
  state); later claims read only what finished since (by trial number: the open ones,
  and the numbers handed out since, through the `(study_id, number)` index).
- **Incremental.** A *view* is one in-memory Optuna study over one stage's ranges; it is
  built once per stage (and when its fidelity moves up or it outgrows `MAX_OBSERVED`),
  and each finished trial is `add_trial`-ed to it as it finishes. `StudySampler.builds`
  counts the builds.
- **Narrowed ranges as bounds.** A view's distributions are the stage's ranges. Optuna's
  samplers drop a parameter from their relative search space as soon as two trials carry
  different distributions for it (`IntersectionSearchSpace`), so trials are not told with
  their own stage's ranges: every observation that lies inside the new ranges is told
  with them, and those outside (and choices the narrowing dropped) are left out: the
  narrowing already decided that region is not where the top trials are.
- **Fidelity-aware, as BOHB** (Falkner et al. 2018, "BOHB: Robust and Efficient
  Hyperparameter Optimization at Scale", section 4.1): scores after different epoch
  budgets are not comparable, so a view models the trials of one budget: the highest
  budget with at least `n_min` observations inside the ranges, else the budget with the
  most. A stage of 5-epoch trials therefore starts from the 1-epoch trials of stage 1 and
  moves to its own trials once it has enough. Diverged and failed trials are evidence at
  every budget (a learning rate that diverges in one epoch diverges in five).
- **Parallel-aware.** TPESampler(constant_liar=True): a suggestion handed out stays a
  RUNNING trial of the view until it finishes, so the next suggestion avoids it.
- **Off the claim path.** TPE's ask takes tens to hundreds of ms (more with more
  trials), and a claim runs in the master's single writer. A background thread prepares
  the next suggestion as soon as one is taken; a claim only pops it. While none is ready
  (a new stage, the first claim after a restart) the claim answers `wait` for a moment,
  unless the view is still in TPE's start-up (fewer than `N_STARTUP` observations in its
  ranges), where the worker samples at random itself, as TPE would.

Diverged and failed trials are told as *infeasible* through Optuna's constraint API (see
`master.tpe`).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import warnings
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gridless.common.db import StageRow, StudyRow, TrialRow
from gridless.common.metric import Metric
from gridless.common.space import (
    Distribution,
    NumericDistribution,
    parse_space,
    suggest_params,
)
from gridless.common.states import TrialState
from gridless.master.tpe import INFEASIBLE, to_optuna

__all__ = [
    "MAX_OBSERVED",
    "N_STARTUP",
    "ModelSampler",
    "Observation",
    "StudySampler",
    "SuggestionPending",
    "map_into",
]

log = logging.getLogger(__name__)

N_STARTUP = 10  # TPE's own start-up count: below it TPE samples at random
# A view holds at most this many observations: the best 25 (TPE's "good" group is never
# larger: gamma(n) = min(ceil(0.1 n), 25)) and the most recent rest, so an ask costs what
# it costs at 200 trials however many finished (0.4 s an ask at 10,000 on a busy 2-core
# machine, and the preparer's CPU slows the claims it shares the interpreter with).
MAX_OBSERVED = 200
_KEEP_BEST = 25
CLIP_REACH = 1.0  # see map_into

_SCORED = (TrialState.COMPLETED.value, TrialState.STOPPED.value)
_INFEASIBLE = (TrialState.DIVERGED.value, TrialState.FAILED.value)
_FINISHED = (*_SCORED, _INFEASIBLE[0], _INFEASIBLE[1])


class SuggestionPending(Exception):
    """The model has no suggestion ready for this stage yet: ask again shortly."""


@dataclass(frozen=True)
class Observation:
    """One finished trial as the model learns from it."""

    number: int
    params: Mapping[str, Any]
    score: float | None
    feasible: bool
    epochs: int | None  # None: a warm start's trial (another study's, any budget)

    @property
    def informative(self) -> bool:
        return not self.feasible or self.score is not None


def _view_key(stage_index: int, space: Mapping[str, Any]) -> str:
    return f"{stage_index}:{json.dumps(space, sort_keys=True)}"


@dataclass(frozen=True)
class _Target:
    """What the claims want suggestions for: a stage's ranges."""

    key: str
    stage_index: int
    space: Mapping[str, Any]
    epochs: int


@dataclass(frozen=True)
class _Prepared:
    build: int  # the view it was asked of
    key: str
    params: dict[str, Any]
    otrial: int  # its number in that view's Optuna study


@dataclass(frozen=True)
class _Running:
    """A trial out on a worker with known parameters (handed out by other means)."""

    number: int
    params: dict[str, Any]


_Event = Observation | _Running | tuple[int, _Prepared]


@dataclass
class _View:
    """One Optuna study over one stage's ranges, at one fidelity."""

    build: int
    key: str
    dists: dict[str, Distribution]
    space: dict[str, Any]  # Optuna distributions
    fidelity: int | None
    study: Any
    startup: int = N_STARTUP  # observations before TPE models (its n_startup_trials)
    observed: int = 0
    count: int = 0  # Optuna trials in `study` (their numbers are 0..count-1)
    worst: float | None = None
    liars: dict[int, int] = field(default_factory=dict)  # gridless number -> Optuna number
    retired: set[int] = field(default_factory=set)  # Optuna numbers told FAIL

    def inside(self, params: Mapping[str, Any]) -> dict[str, Any] | None:
        """`params` mapped into this view's ranges (`map_into`), or None."""
        return map_into(self.dists, params)


class StudySampler:
    """The model of one study: its observations, its current view and the suggestion
    prepared for the next claim. The claim path touches only `_mutex`-guarded fields
    (`_inbox`, `_ready`, `_target`, `startup_key`); Optuna runs in `step` (the preparer
    thread)."""

    def __init__(self, study_id: int, *, seed: int, objective: Metric) -> None:
        self.study_id = study_id
        self.seed = seed
        self.objective = objective
        self._mutex = threading.Lock()
        # claim-path side (under _mutex)
        self._inbox: list[_Event] = []
        self._ready: _Prepared | None = None
        self._target: _Target | None = None
        self.startup_key: str | None = None  # the target's view is in TPE's start-up
        self.startup_left = 0  # observations it lacks to leave it
        self.offered = 0  # finished trials offered so far (warm start's included)
        # the claim path's own bookkeeping (the writer thread only)
        self.open_numbers: set[int] = set()  # trials not finished when last seen
        self.seen_running: set[int] = set()
        self.max_number = -1
        # preparer side
        self.points: dict[int, Observation] = {}
        self.warm: list[Observation] = []
        self.running: dict[int, dict[str, Any]] = {}  # trials out on workers, with params
        self.view: _View | None = None
        self.builds = 0  # views built (for tests and benchmarks)
        self.asks = 0
        self.ask_seconds = 0.0  # spent in TPE's ask (for benchmarks)

    # -- claim path ------------------------------------------------------------------------

    def offer(self, events: Iterable[_Event]) -> None:
        with self._mutex:
            for event in events:
                self._inbox.append(event)
                self.offered += isinstance(event, Observation)

    def aim(self, target: _Target) -> None:
        """Claims now want suggestions for `target`."""
        with self._mutex:
            self._target = target

    def take(self, target: _Target, number: int) -> dict[str, Any] | None:
        """The prepared suggestion for `target` (it becomes trial `number`), None when the
        worker should sample at random (start-up).

        Raises:
            SuggestionPending: nothing is ready yet.
        """
        with self._mutex:
            self._target = target
            ready = self._ready
            if ready is not None and ready.key == target.key:
                self._ready = None
                self._inbox.append((number, ready))
                return dict(ready.params)
            if self.startup_key == target.key:
                arrived = sum(isinstance(e, Observation) for e in self._inbox)
                if arrived < self.startup_left:
                    return None  # still in start-up with what arrived since
            elif self.offered < _startup(target):
                return None  # fewer finished trials in all than its start-up needs
        raise SuggestionPending(f"study {self.study_id}: the model is preparing a suggestion")

    def needs_work(self) -> bool:
        with self._mutex:
            if self._target is None:
                return False
            if self._inbox:
                return True
            if self.startup_key == self._target.key:
                return False
            return self._ready is None or self._ready.key != self._target.key

    # -- preparer thread -------------------------------------------------------------------

    def step(self) -> None:
        """Learn what arrived, rebuild the view if it is stale, prepare a suggestion."""
        with self._mutex:
            inbox, self._inbox = self._inbox, []
            target = self._target
            stale = None
            if self._ready is not None and (target is None or self._ready.key != target.key):
                stale, self._ready = self._ready, None
        if target is None:
            return
        view = self.view
        if stale is not None and view is not None and view.build == stale.build:
            self._retire(view, stale.otrial)
        fresh: list[Observation] = []
        for event in inbox:
            if isinstance(event, Observation):
                if event.number not in self.points:
                    self.points[event.number] = event
                    fresh.append(event)
                self.running.pop(event.number, None)
            elif isinstance(event, _Running):
                if event.number not in self.points and event.number not in self.running:
                    self.running[event.number] = event.params
                    if view is not None:
                        self._lie(view, event.number, event.params)
            else:
                number, prepared = event
                self.running[number] = prepared.params
                if view is not None and view.build == prepared.build:
                    view.liars[number] = prepared.otrial
        if view is None or view.key != target.key or self._outgrown(view, fresh, target):
            view = self._build(target)
        else:
            for obs in fresh:
                self._tell(view, obs)
        startup = view.observed < view.startup
        with self._mutex:
            self.startup_key = target.key if startup else None
            self.startup_left = view.startup - view.observed
            want = self._ready is None and not startup
        if not want:
            return
        prepared = self._ask(view)
        with self._mutex:
            if self._target is not None and self._target.key == prepared.key:
                self._ready = prepared
                return
        self._retire(view, prepared.otrial)

    def _n_min(self, target: _Target) -> int:
        return max(N_STARTUP, len(target.space) + 1)

    def _fidelity(self, target: _Target, dists: Mapping[str, Distribution]) -> int | None:
        """BOHB's budget: the highest with n_min scored observations inside the ranges,
        else the one with the most (None when nothing scored yet)."""
        counts: dict[int, int] = {}
        for obs in self.points.values():
            if obs.feasible and obs.score is not None and obs.epochs is not None:
                if map_into(dists, obs.params) is not None:
                    counts[obs.epochs] = counts.get(obs.epochs, 0) + 1
        if not counts:
            return None
        enough = [f for f, n in counts.items() if n >= self._n_min(target)]
        if enough:
            return max(enough)
        return max(counts, key=lambda f: (counts[f], f))

    def _outgrown(self, view: _View, fresh: list[Observation], target: _Target) -> bool:
        """A higher budget now has enough observations, or the view holds too many."""
        if view.observed > 2 * MAX_OBSERVED:
            return True
        if view.fidelity is None:  # nothing had scored: the first budget that does
            view.fidelity = self._fidelity(target, view.dists)
            return False
        higher = [
            o
            for o in fresh
            if o.feasible
            and o.score is not None
            and o.epochs is not None
            and (view.fidelity is None or o.epochs > view.fidelity)
        ]
        if not higher:
            return False
        return self._fidelity(target, view.dists) != view.fidelity

    def _build(self, target: _Target) -> _View:
        import optuna

        dists = parse_space(target.space)
        fidelity = self._fidelity(target, dists)
        self.builds += 1
        startup = _startup(target)
        sampler = optuna.samplers.TPESampler(
            seed=(self.seed * 1_000_003 + self.builds * 7919) % 2**32,
            multivariate=True,
            group=True,
            constant_liar=True,
            n_startup_trials=startup,
        )
        study = optuna.create_study(direction=self.objective.direction, sampler=sampler)
        view = _View(
            build=self.builds,
            key=target.key,
            dists=dists,
            space={name: to_optuna(d) for name, d in dists.items()},
            fidelity=fidelity,
            study=study,
            startup=startup,
        )
        chosen = [
            o
            for o in self.points.values()
            if o.informative and (not o.feasible or o.epochs == fidelity)
        ]
        if target.stage_index == 0:
            chosen += self.warm
        chosen = [o for o in chosen if view.inside(o.params) is not None]
        for obs in self._subsample(chosen):
            self._tell(view, obs)
        for number, params in self.running.items():
            self._lie(view, number, params)
        self.view = view
        log.debug(
            "study %s: view %d over stage %d at %s epochs, %d observations",
            self.study_id,
            self.builds,
            target.stage_index + 1,
            fidelity,
            view.observed,
        )
        return view

    def _subsample(self, chosen: list[Observation]) -> list[Observation]:
        """At most MAX_OBSERVED, in trial order: the best 25, then the most recent."""
        if len(chosen) <= MAX_OBSERVED:
            return sorted(chosen, key=lambda o: o.number)
        scored = [o for o in chosen if o.feasible and o.score is not None]
        sign = self.objective.sign
        best = sorted(scored, key=lambda o: -sign * float(o.score or 0.0))[:_KEEP_BEST]
        keep = {o.number for o in best}
        for obs in sorted(chosen, key=lambda o: -o.number):
            if len(keep) >= MAX_OBSERVED:
                break
            keep.add(obs.number)
        return sorted((o for o in chosen if o.number in keep), key=lambda o: o.number)

    def _lie(self, view: _View, number: int, params: Mapping[str, Any]) -> None:
        """A trial out on a worker: a RUNNING trial of the view (constant liar)."""
        import optuna

        told = view.inside(params)
        if told is None or number in view.liars:
            return
        view.study.add_trial(
            optuna.trial.create_trial(
                params=told,
                distributions={k: view.space[k] for k in told},
                state=optuna.trial.TrialState.RUNNING,
            )
        )
        view.liars[number] = view.count
        view.count += 1

    def _tell(self, view: _View, obs: Observation) -> None:
        import optuna

        otrial = view.liars.get(obs.number)
        if otrial is not None:
            self._retire(view, otrial)
        if not obs.informative:
            return
        if obs.feasible and obs.epochs is not None and obs.epochs != view.fidelity:
            return  # another budget's score: not comparable (BOHB)
        told = view.inside(obs.params)
        if told is None:
            return
        if obs.feasible and obs.score is not None:
            value = obs.score
            if view.worst is None or self.objective.better(view.worst, value):
                view.worst = value
        else:
            # Optuna needs a value on a completed trial; TPE ranks an infeasible one
            # after every feasible one whatever its value
            value = view.worst if view.worst is not None else 0.0
        view.study.add_trial(
            optuna.trial.create_trial(
                params=told,
                distributions={k: view.space[k] for k in told},
                value=value,
                constraints=None if obs.feasible else {INFEASIBLE: 1.0},
            )
        )
        view.count += 1
        view.observed += 1

    def _retire(self, view: _View, otrial: int) -> None:
        """A suggestion that ended (or was never used) is no longer a running liar."""
        import optuna

        for number, liar in list(view.liars.items()):
            if liar == otrial:
                del view.liars[number]
        if otrial in view.retired:
            return
        view.retired.add(otrial)
        view.study.tell(otrial, state=optuna.trial.TrialState.FAIL)

    def _ask(self, view: _View) -> _Prepared:
        started = time.perf_counter()
        trial = view.study.ask()
        # define-by-run, parents first, so a conditional space (`when:`) asks only the
        # active parameters and TPE's groups see which subspace a trial lives in
        params = {k: _plain(v) for k, v in suggest_params(trial, view.dists).items()}
        self.ask_seconds += time.perf_counter() - started
        view.count = trial.number + 1
        self.asks += 1
        return _Prepared(view.build, view.key, params, trial.number)


def _startup(target: _Target) -> int:
    """TPE's start-up count for a stage's view: its default in the first stage; in a
    narrowed later stage, d + 1 observations (BOHB's minimum for a model): the narrowing
    already used the earlier trials, and random sampling there is what the view replaces."""
    if target.stage_index == 0:
        return N_STARTUP
    return min(N_STARTUP, len(target.space) + 1)


def map_into(
    dists: Mapping[str, Distribution], params: Mapping[str, Any]
) -> dict[str, Any] | None:
    """`params` as a view over `dists` is told them: a value inside its range as it is; a
    number outside by at most `CLIP_REACH` times the range's width (in its sampling scale)
    clipped onto the nearer bound, so that the trials just beyond a narrowed range still
    shape TPE's densities at its edges; None for anything farther, or a choice the
    narrowing dropped (that region is not where the top trials were)."""
    told: dict[str, Any] = {}
    for name, value in params.items():
        dist = dists.get(name)
        if dist is None:
            continue
        if dist.contains(value):
            told[name] = value
            continue
        if not isinstance(dist, NumericDistribution) or not _positive_number(value, dist.log):
            return None
        low, high = dist.to_scale(dist.low), dist.to_scale(dist.high)
        x = dist.to_scale(float(value))
        reach = CLIP_REACH * (high - low)
        if not low - reach <= x <= high + reach:
            return None
        bound = dist.low if x < low else dist.high
        told[name] = int(bound) if dist.integer else float(bound)
    return told or None


def _positive_number(value: Any, log: bool) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return not log or value > 0


def _plain(value: Any) -> Any:
    """A JSON-ready Python value (Optuna may hand back NumPy scalars)."""
    if hasattr(value, "item"):
        return value.item()
    return value


class ModelSampler:
    """The master's `ParamSuggester` for model-based studies: a `StudySampler` per study
    and one preparer thread for them all.

    Args:
        background: False prepares in the claim itself (for unit tests and harnesses
            that want every suggestion to know every trial finished before its claim).
    """

    def __init__(self, *, background: bool = True) -> None:
        import optuna
        from optuna.exceptions import ExperimentalWarning

        optuna.logging.set_verbosity(logging.WARNING)

        # multivariate, group and constant_liar are experimental in Optuna 5; chosen on
        # purpose (docs/search-controls.md), so the warning is not repeated in the log
        warnings.filterwarnings("ignore", category=ExperimentalWarning, module="optuna")
        self.background = background
        self.states: dict[int, StudySampler] = {}
        self._lock = threading.Lock()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._busy = False
        # seconds each claim spent here (the latest 10,000; for benchmarks)
        self.claim_seconds: deque[float] = deque(maxlen=10_000)

    def __call__(
        self, s: Session, study: StudyRow, stage: StageRow, number: int
    ) -> dict[str, Any] | None:
        """The model's parameters for trial `number` of `stage`; None when the worker
        samples at random (sampler: random, or TPE's start-up).

        Raises:
            SuggestionPending: none is ready yet; the claim asks again shortly.
        """
        if study.spec.get("sampler", "tpe") == "random":
            return None
        started = time.perf_counter()
        try:
            return self._suggest(s, study, stage, number)
        finally:
            self.claim_seconds.append(time.perf_counter() - started)

    def _suggest(
        self, s: Session, study: StudyRow, stage: StageRow, number: int
    ) -> dict[str, Any] | None:
        state = self.state_for(s, study)
        self.sync(s, state)
        target = _Target(
            key=_view_key(stage.index, stage.space),
            stage_index=stage.index,
            space=dict(stage.space),
            epochs=stage.epochs,
        )
        state.open_numbers.add(number)  # the trial this claim creates: watched from now on
        if not self.background:
            state.aim(target)
            state.step()
            return state.take(target, number)
        try:
            return state.take(target, number)
        finally:
            self.notify()

    # -- loading and syncing ------------------------------------------------------------

    def state_for(self, s: Session, study: StudyRow) -> StudySampler:
        """The study's model, loaded from the database on first use in this process."""
        with self._lock:
            state = self.states.get(study.id)
            if state is None:
                state = StudySampler(study.id, seed=study.seed, objective=study.objective)
                self._load(s, study, state)
                self.states[study.id] = state
        return state

    def _load(self, s: Session, study: StudyRow, state: StudySampler) -> None:
        rows = s.execute(
            select(
                TrialRow.number,
                TrialRow.params,
                TrialRow.best_score,
                TrialRow.state,
                TrialRow.epochs,
            ).where(TrialRow.study_id == study.id)
        ).all()
        events: list[_Event] = []
        for number, params, best, st, epochs in rows:
            state.max_number = max(state.max_number, number)
            if st in _FINISHED:
                events.append(Observation(number, dict(params or {}), best, st in _SCORED, epochs))
            else:
                state.open_numbers.add(number)
                if params:
                    state.seen_running.add(number)
                    events.append(_Running(number, dict(params)))
        state.warm = _warm_points(s, study)
        state.offered += len(state.warm)
        state.offer(events)

    def sync(self, s: Session, state: StudySampler) -> None:
        """Offer what finished, or went out with known parameters, since the last claim
        (over the `(study_id, number)` index: the newer trials and the open ones)."""
        columns = (
            TrialRow.number,
            TrialRow.params,
            TrialRow.best_score,
            TrialRow.state,
            TrialRow.epochs,
        )
        mine = TrialRow.study_id == state.study_id
        # two queries, not one OR: each is a range or lookups on the index
        newer = list(s.execute(select(*columns).where(mine, TrialRow.number > state.max_number)))
        if state.open_numbers:
            watched = TrialRow.number.in_(sorted(state.open_numbers))
            newer += s.execute(select(*columns).where(mine, watched)).all()
        events: list[_Event] = []
        rows = {row[0]: row for row in newer}  # a trial may be in both
        for number, params, best, st, epochs in rows.values():
            state.max_number = max(state.max_number, number)
            if st in _FINISHED:
                state.open_numbers.discard(number)
                state.seen_running.discard(number)
                events.append(Observation(number, dict(params or {}), best, st in _SCORED, epochs))
                continue
            state.open_numbers.add(number)
            if params and number not in state.seen_running:
                state.seen_running.add(number)
                events.append(_Running(number, dict(params)))
        if events:
            state.offer(events)

    # -- the preparer thread ------------------------------------------------------------

    def notify(self) -> None:
        """Wake the preparer (starting it on first use)."""
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._loop, name="gridless-sampler", daemon=True
            )
            self._thread.start()
        with self._wake:
            self._wake.notify_all()

    def settle(self, timeout_s: float = 60.0) -> bool:
        """Wait until the preparer has nothing left to do (benchmarks and tests)."""
        deadline = time.monotonic() + timeout_s
        with self._wake:
            while self._busy or any(st.needs_work() for st in list(self.states.values())):
                self._wake.notify_all()
                if not self._wake.wait(timeout=max(0.0, deadline - time.monotonic())):
                    if time.monotonic() >= deadline:
                        return False
        return True

    def close(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._stopping and not any(
                    st.needs_work() for st in list(self.states.values())
                ):
                    self._busy = False
                    self._wake.notify_all()
                    self._wake.wait(timeout=5.0)
                if self._stopping:
                    self._busy = False
                    self._wake.notify_all()
                    return
                self._busy = True
            for state in list(self.states.values()):
                if state.needs_work():
                    try:
                        state.step()
                    except Exception:  # a broken model must not end the thread
                        log.exception("study %s: the sampler failed", state.study_id)
                        with state._mutex:
                            state.startup_key = state._target.key if state._target else None


def _warm_points(s: Session, study: StudyRow) -> list[Observation]:
    """A warm start's old trials: they teach the first stage's model too."""
    warm = study.spec.get("warm_start")
    if not warm:
        return []
    if warm.get("snapshot"):
        return [
            Observation(-1 - i, t["params"], t["score"], True, None)
            for i, t in enumerate(warm["snapshot"]["trials"])
        ]
    if warm.get("study"):
        old = select(TrialRow).where(
            TrialRow.study_id == int(warm["study"]),
            TrialRow.best_score.is_not(None),
            TrialRow.state.in_(_SCORED),
        )
        return [
            Observation(-1 - t.number, dict(t.params or {}), t.best_score, True, None)
            for t in s.scalars(old)
        ]
    return []
