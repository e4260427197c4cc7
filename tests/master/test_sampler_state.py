"""The model-based sampler's state (master/sampler_state.py): one TPE model per study that
learns across stages, incrementally, aware of running trials, inside the stage's ranges,
rebuilt from the database after a restart, reproducible from the study seed."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gridless.common.messages import EpochReport, FinishRequest, StartRequest
from gridless.common.space import LogUniform, Uniform, parse_space, sample_params
from gridless.common.spec import parse_spec, trial_rng
from gridless.master.app import create_app
from gridless.master.sampler_state import (
    N_STARTUP,
    ModelSampler,
    StudySampler,
    map_into,
)
from tests.conftest import TINY_SPEC

SPACE = {"x": {"uniform": [0.0, 10.0]}, "lr": {"log_uniform": [1e-4, 1.0]}}


def score(params: dict[str, Any]) -> float:
    """Peaked at x = 7, lr = 1e-2."""
    return -abs(float(params["x"]) - 7.0) - abs(math.log10(float(params["lr"])) + 2.0)


class Local:
    """A master's app without its HTTP server: the real protocol, in this process."""

    def __init__(self, root: Path) -> None:
        (root / "store").mkdir(parents=True, exist_ok=True)
        self.url = f"sqlite:///{root / 'g.db'}"
        self.root = root
        self.open()

    def open(self) -> None:
        self.app = create_app(database_url=self.url, store_root=self.root / "store")
        self.service = self.app.state.service
        self.protocol = self.app.state.protocol
        self.sampler: ModelSampler = self.protocol.sampler

    def close(self) -> None:
        self.protocol.close()
        self.app.state.engine.dispose()

    def claim(self, worker: str = "w1") -> Any:
        """A claim as a worker makes it, asking again while the model prepares."""
        for _ in range(50):
            self.sampler.settle()
            answer = self.protocol.claim(worker)
            if answer.assignment is not None:
                return answer.assignment
        raise AssertionError("no assignment")

    def start(self, job: Any, worker: str = "w1") -> dict[str, Any]:
        params = job.params
        if params is None:  # TPE's start-up: the worker samples, as worker/loop.py does
            rng = trial_rng(job.seed, job.trial_number)
            params = dict(sample_params(parse_space(job.space), rng))
        self.protocol.start_trial(
            job.trial_id, StartRequest(worker_id=worker, attempt=0, params=params)
        )
        return dict(params)

    def finish(self, job: Any, value: float | None, worker: str = "w1") -> None:
        report = EpochReport(
            worker_id=worker,
            attempt=0,
            epoch=1,
            metrics={"value": value},
            diverged=value is None,
        )
        ack = self.protocol.record_report(job.trial_id, report)
        if value is not None and not ack.stop:
            self.protocol.finish_trial(
                job.trial_id, FinishRequest(worker_id=worker, attempt=0, state="completed")
            )

    def run(self, n: int) -> list[tuple[Any, dict[str, Any]]]:
        out = []
        for _ in range(n):
            job = self.claim()
            params = self.start(job)
            self.finish(job, score(params))
            out.append((job, params))
        return out

    def state(self, study_id: int = 1) -> StudySampler:
        return self.sampler.states[study_id]


@pytest.fixture
def local(tmp_path: Path) -> Iterator[Local]:
    m = Local(tmp_path / "m")
    try:
        yield m
    finally:
        m.close()


def study(local: Local, **changes: Any) -> int:
    spec = {
        **TINY_SPEC,
        "train": "benchmarks.search_objectives:tabular",
        "metric": {"name": "value", "mode": "max"},
        "space": SPACE,
        "stages": [{"trials": 16, "epochs": 1}],
        "early_stopping": {"rule": "none"},
        "sampler": "tpe",
        **changes,
    }
    spec.pop("model")
    return int(local.service.create_study(parse_spec(spec)).id)


def test_sampler_tpe_is_the_model(local: Local) -> None:
    study(local)
    assert local.service.get_study(1).spec["sampler"] == "tpe"
    runs = local.run(N_STARTUP + 4)
    # TPE's start-up: the workers sample; then every trial's parameters are the model's
    assert [job.params is None for job, _ in runs] == [True] * N_STARTUP + [False] * 4
    assert all(parse_space(SPACE)[k].contains(v) for _, p in runs for k, v in p.items())


def test_sampler_random_leaves_sampling_to_the_workers(local: Local) -> None:
    study(local, sampler="random")
    runs = local.run(N_STARTUP + 3)
    assert all(job.params is None for job, _ in runs)
    assert 1 not in local.sampler.states


def test_a_stage_2_suggestion_learns_from_stage_1(local: Local) -> None:
    study(local, stages=[{"trials": 20, "epochs": 1}, {"trials": 4, "epochs": 1}])
    local.run(20)
    job = local.claim()
    assert job.stage == 2
    assert job.params is not None  # no start-up again: stage 1's trials are in the model
    state = local.state()
    assert state.view is not None
    assert state.view.key.startswith("1:")
    told = state.view.study.get_trials(deepcopy=False)
    assert state.view.observed >= N_STARTUP
    # every stage-1 trial told lies inside the narrowed ranges (clipped onto their edges)
    box = parse_space(job.space)
    assert all(box[k].contains(v) for t in told for k, v in t.params.items())


def test_suggestions_stay_inside_the_narrowed_ranges(local: Local) -> None:
    study(local, stages=[{"trials": 20, "epochs": 1}, {"trials": 8, "epochs": 1}])
    local.run(20)
    box = None
    for job, params in local.run(8):
        box = parse_space(job.space)
        assert job.stage == 2
        assert all(box[k].contains(v) for k, v in params.items())
    assert box is not None
    assert box != parse_space(SPACE)


def test_the_model_is_built_once_per_stage_not_per_claim(local: Local) -> None:
    study(local, stages=[{"trials": 24, "epochs": 1}, {"trials": 12, "epochs": 1}])
    local.run(36)
    state = local.state()
    assert state.asks >= 24  # (36 - start-up) suggestions and the ones prepared ahead
    assert state.builds == 2  # one view per stage (both at one epoch)


def test_a_running_trial_is_told_as_pending(local: Local) -> None:
    study(local)
    local.run(N_STARTUP)
    first = local.claim("w1")
    local.start(first, "w1")
    second = local.claim("w2")  # while `first` still runs
    assert first.params is not None
    assert second.params is not None
    view = local.state().view
    assert view is not None
    running = view.study.get_trials(deepcopy=False, states=(_running(),))
    assert {tuple(sorted(t.params.items())) for t in running} >= {
        tuple(sorted(first.params.items()))
    }
    assert first.trial_number in view.liars


def _running() -> Any:
    import optuna

    return optuna.trial.TrialState.RUNNING


def test_diverged_trials_are_told_as_infeasible(local: Local) -> None:
    study(local)
    for i in range(N_STARTUP + 2):
        job = local.claim()
        local.start(job)
        local.finish(job, None if i % 3 == 0 else -1.0)
    view = local.state().view
    assert view is not None
    constraints = [t.constraints for t in view.study.get_trials(deepcopy=False) if t.value]
    assert sum(1 for c in constraints if c) >= 3  # trials 0, 3, 6, 9 diverged


def test_a_restarted_master_rebuilds_the_model_from_the_database(tmp_path: Path) -> None:
    m = Local(tmp_path / "m")
    study(m, stages=[{"trials": 30, "epochs": 1}])
    m.run(N_STARTUP + 2)
    m.close()
    m.open()  # a new master process over the same database
    try:
        assert m.sampler.states == {}
        job = m.claim()
        assert job.params is not None  # not back to start-up: it read the finished trials
        assert m.state().view is not None
        assert m.state().view.observed == N_STARTUP + 2  # type: ignore[union-attr]
    finally:
        m.close()


def suggestions(root: Path, seed: int) -> list[dict[str, Any]]:
    m = Local(root)
    try:
        study(m, seed=seed, stages=[{"trials": 20, "epochs": 1}, {"trials": 6, "epochs": 1}])
        return [p for _, p in m.run(26)]
    finally:
        m.close()


def test_the_same_seed_gives_the_same_suggestions(tmp_path: Path) -> None:
    a = suggestions(tmp_path / "a", 5)
    b = suggestions(tmp_path / "b", 5)
    c = suggestions(tmp_path / "c", 6)
    assert a == b
    assert a != c


def test_the_model_concentrates_on_the_peak(local: Local) -> None:
    study(local, stages=[{"trials": 40, "epochs": 1}], narrowing={"border": 0.0})
    runs = local.run(40)
    start = [score(p) for _, p in runs[:N_STARTUP]]
    guided = [score(p) for _, p in runs[-N_STARTUP:]]
    assert sum(guided) / len(guided) > sum(start) / len(start)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (3.0, 3.0),  # inside
        (2.0, 2.0),  # on the low bound
        (1.0, 2.0),  # half a width below: clipped onto it
        (6.0, 4.0),  # a whole width above
        (-0.1, None),  # farther: not told
        (6.1, None),
    ],
)
def test_observations_just_outside_the_ranges_are_clipped(
    value: float, expected: float | None
) -> None:
    dists = {"x": Uniform(2.0, 4.0), "lr": LogUniform(1e-3, 1e-1)}
    # lr 1e-4 lies half a width (in log10) below [1e-3, 1e-1] in log10: clipped onto 1e-3
    mapped = map_into(dists, {"x": value, "lr": 1e-4, "other": 1})
    assert mapped == (None if expected is None else {"x": expected, "lr": 1e-3})
