"""ASHA as a pure rule: its rungs, its cut, and its decisions on asynchronous
streams of reports, checked against Ray Tune's own `AsyncHyperBandScheduler`, the
reference it follows; the spec keys of each rule. The run through a real master and Ray
workers is tests/e2e/test_asha_e2e.py."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from gridless.common.errors import SpecError
from gridless.common.metric import Metric
from gridless.common.spec import parse_spec
from gridless.master.early_stopping import asha_cutoff, asha_rungs
from tests.conftest import TINY_SPEC


@pytest.mark.parametrize(
    ("epochs", "min_epochs", "factor", "rungs", "expected"),
    [
        (1, 1, 4.0, None, []),  # a one-epoch stage has nothing to halve
        (2, 1, 4.0, None, [1]),
        (4, 1, 4.0, None, [1]),  # a rung on the last epoch could stop nothing
        (5, 1, 4.0, None, [1, 4]),
        (81, 1, 3.0, None, [1, 3, 9, 27]),
        (82, 1, 3.0, None, [1, 3, 9, 27, 81]),
        (30, 2, 2.0, None, [2, 4, 8, 16]),
        (30, 2, 2.0, 2, [2, 4]),
        (20, 1, 1.5, None, [1, 2, 3, 4, 6, 8, 12, 18]),  # ceil(1.5**k), no repeats
        (20, 1, 1.1, 3, [1, 2, 3]),
        (3, 3, 2.0, None, []),
    ],
)
def test_rungs_sit_at_min_epochs_times_powers_of_the_factor_below_the_last_epoch(
    epochs: int, min_epochs: int, factor: float, rungs: int | None, expected: list[int]
) -> None:
    got = asha_rungs(epochs, min_epochs=min_epochs, reduction_factor=factor, rungs=rungs)
    assert got == expected


@pytest.mark.parametrize(
    ("others", "factor", "maximize", "expected"),
    [
        ([], 4.0, True, None),  # the first trial at a rung always goes on
        ([0.5], 4.0, True, 0.5),
        ([2.0, 4.0], 2.0, True, 3.0),  # Ray Tune's docstring example
        ([0.3, 0.5, 0.8], 3.0, True, 0.6),
        ([0.3, 0.5, 0.8], 3.0, False, 0.3 + 0.2 * 2 / 3),  # minimized: the lowest third
        ([1.0, 2.0, 3.0, 4.0, 5.0], 4.0, True, 4.0),
        ([1.0, 2.0, 3.0, 4.0, 5.0], 4.0, False, 2.0),
    ],
)
def test_the_cut_keeps_the_top_one_in_factor(
    others: list[float], factor: float, maximize: bool, expected: float | None
) -> None:
    cut = asha_cutoff(others, factor, objective=Metric.of("m", maximize=maximize))
    assert cut == pytest.approx(expected) if expected is not None else cut is None


def ours(
    events: list[tuple[int, int, float]],
    *,
    epochs: int,
    min_epochs: int,
    factor: float,
    maximize: bool,
) -> list[bool]:
    """The decisions gridless takes on a stream of (trial, epoch, score) reports: each
    report is compared with the scores stored before it (master/early_stopping.py)."""
    rungs = asha_rungs(epochs, min_epochs=min_epochs, reduction_factor=factor)
    stored: dict[int, dict[int, float]] = {}
    decisions = []
    for trial, epoch, score in events:
        others = [v for t, v in stored.get(epoch, {}).items() if t != trial]
        stored.setdefault(epoch, {})[trial] = score
        cut = (
            asha_cutoff(others, factor, objective=Metric.of("m", maximize=maximize))
            if epoch in rungs
            else None
        )
        behind = cut is not None and (score < cut if maximize else score > cut)
        decisions.append(behind)
    return decisions


def ray_tune(
    events: list[tuple[int, int, float]],
    *,
    epochs: int,
    min_epochs: int,
    factor: float,
    maximize: bool,
) -> list[bool]:
    """Ray Tune's ASHA (one bracket) on the same stream."""
    from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler

    scheduler = AsyncHyperBandScheduler(
        metric="score",
        mode="max" if maximize else "min",
        max_t=epochs,
        grace_period=min_epochs,
        reduction_factor=factor,
    )
    trials: dict[int, SimpleNamespace] = {}
    decisions = []
    for trial, epoch, score in events:
        if trial not in trials:
            trials[trial] = SimpleNamespace(trial_id=str(trial))
            scheduler.on_trial_add(None, trials[trial])  # type: ignore[arg-type]
        result = {"training_iteration": epoch, "score": score}
        action = scheduler.on_trial_result(None, trials[trial], result)  # type: ignore[arg-type]
        decisions.append(action == TrialScheduler.STOP)
    return decisions


def asynchronous_stream(
    rng: np.random.Generator, *, trials: int, epochs: int, workers: int, decide: object
) -> list[tuple[int, int, float]]:
    """Trials with noisy learning curves, `workers` at a time, each report in an order
    the workers' speeds decide; a stopped trial reports no more (its worker takes the
    next). `decide(events)` says whether the latest report stops its trial."""
    quality = rng.uniform(0.2, 0.9, size=trials)
    waiting = list(range(trials))
    running: dict[int, int] = {}  # trial -> next epoch
    events: list[tuple[int, int, float]] = []
    while waiting or running:
        while waiting and len(running) < workers:
            running[waiting.pop(0)] = 1
        trial = int(rng.choice(sorted(running)))
        epoch = running[trial]
        score = float(quality[trial] * (1 - 0.7**epoch) + rng.normal(0, 0.03))
        events.append((trial, epoch, score))
        stop = decide(events)  # type: ignore[operator]
        if stop or epoch == epochs:
            del running[trial]
        else:
            running[trial] = epoch + 1
    return events


@pytest.mark.parametrize("maximize", [True, False])
@pytest.mark.parametrize(
    ("epochs", "min_epochs", "factor"), [(9, 1, 3.0), (16, 1, 2.0), (20, 2, 4.0), (12, 1, 1.5)]
)
@pytest.mark.parametrize("seed", range(4))
def test_decisions_match_ray_tunes_asha_on_asynchronous_streams(
    maximize: bool, epochs: int, min_epochs: int, factor: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    kw = {"epochs": epochs, "min_epochs": min_epochs, "factor": factor, "maximize": maximize}
    sign = 1.0 if maximize else -1.0

    def decide(events: list[tuple[int, int, float]]) -> bool:
        signed = [(t, e, sign * v) for t, e, v in events]  # a minimized loss falls
        return ours(signed, **kw)[-1] if signed[-1][1] < epochs else False

    events = asynchronous_stream(rng, trials=40, epochs=epochs, workers=4, decide=decide)
    events = [(t, e, sign * v) for t, e, v in events]
    mine = ours(events, **kw)
    theirs = ray_tune(events, **kw)
    before_last = [i for i, (_, e, _) in enumerate(events) if e < epochs]  # Ray stops at max_t
    assert [mine[i] for i in before_last] == [theirs[i] for i in before_last]
    stopped = sum(mine)
    assert 10 <= stopped < 40  # the stream exercised the rule: many stops, not all


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (
            {"rule": "median", "reduction_factor": 3},
            "early_stopping.reduction_factor: a setting of the asha rule, but the rule is median",
        ),
        (
            {"rule": "asha", "grace_epochs": 2},
            "early_stopping.grace_epochs: a setting of the median rule, but the rule is asha",
        ),
        (
            {"rule": "asha", "reduction_factor": 1.0},
            "early_stopping.reduction_factor: Input should be greater than 1",
        ),
        (
            {"rule": "asha", "min_epochs": 0},
            "early_stopping.min_epochs: Input should be greater than or equal to 1",
        ),
        ({"rule": "hyperband"}, "early_stopping.rule: Input should be 'median', 'asha' or 'none'"),
    ],
)
def test_each_rule_takes_only_its_own_keys(rule: dict[str, object], message: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec({**TINY_SPEC, "early_stopping": rule})
    assert str(caught.value) == message


def test_an_asha_spec_round_trips_through_its_stored_form() -> None:
    spec = parse_spec(
        {**TINY_SPEC, "early_stopping": {"rule": "asha", "reduction_factor": 3, "rungs": 2}}
    )
    stored = spec.model_dump(mode="json")
    assert stored["early_stopping"] == {
        "rule": "asha",
        "grace_epochs": 1,
        "min_trials": 5,
        "min_epochs": 1,
        "reduction_factor": 3.0,
        "rungs": 2,
    }
    assert parse_spec(stored) == spec
