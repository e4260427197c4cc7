"""Search spaces: validation, inclusive bounds, log-scale sampling, reproducibility."""

from __future__ import annotations

import math
import multiprocessing

import numpy as np
import pytest
from scipy import stats

from gridless.common.errors import SpecError
from gridless.common.space import (
    Choice,
    IntLogUniform,
    IntUniform,
    LogUniform,
    Uniform,
    parse_space,
    sample_params,
    space_to_json,
)
from gridless.common.spec import trial_rng

SPACE_JSON = {
    "learning_rate": {"log_uniform": [1e-6, 10.0]},
    "reg": {"log_uniform": [1e-6, 10.0]},
    "dropout": {"uniform": [0.0, 0.9]},
    "hidden": {"int_log_uniform": [16, 512]},
    "layers": {"int": [1, 3]},
    "update": {"choice": ["momentum", "sgd"]},
}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"log_uniform": [0.0, 1.0]},
            "space.p: log_uniform: `low > 0` must hold for a log scale, but got low=0.0, high=1.0",
        ),
        (
            {"log_uniform": [-1.0, 1.0]},
            "space.p: log_uniform: `low > 0` must hold for a log scale, but got low=-1.0, high=1.0",
        ),
        (
            {"uniform": [2.0, 1.0]},
            "space.p: uniform: `low <= high` must hold, but got low=2.0, high=1.0",
        ),
        (
            {"uniform": [0.0, math.inf]},
            "space.p: uniform: `high` must be finite, but got high=inf",
        ),
        ({"uniform": [math.nan, 1.0]}, "space.p: uniform: `low` must be finite, but got low=nan"),
        ({"int": [1.5, 3]}, "space.p: int: `low` must be an integer, but got low=1.5"),
        (
            {"int_log_uniform": [0, 3]},
            "space.p: int_log_uniform: `low > 0` must hold for a log scale, but got low=0, high=3",
        ),
        ({"choice": []}, "space.p: choice: the option list must not be empty, but got []"),
        ({"choice": ["a", "a"]}, "space.p: choice: options must be distinct, but got ['a', 'a']"),
        (
            {"loguniform": [1, 2]},
            "space.p: unknown distribution 'loguniform'; valid: uniform, log_uniform, int, int_log_uniform, choice",
        ),
        ({"uniform": [1]}, "space.p: uniform: expects [low, high], but got [1]"),
        ({"uniform": ["a", 1]}, "space.p: uniform: `low` must be a number, but got low='a'"),
        (
            [1, 2],
            "space.p: must be a mapping with exactly one of uniform, log_uniform, int, int_log_uniform, choice, but got [1, 2]",
        ),
    ],
)
def test_invalid_distributions_name_field_and_rule(raw: object, message: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_space({"p": raw})
    assert str(info.value) == message


def test_json_round_trip() -> None:
    space = parse_space(SPACE_JSON)
    assert space_to_json(space) == SPACE_JSON
    assert parse_space(space_to_json(space)) == space


@pytest.mark.parametrize(
    "dist",
    [
        LogUniform(1e-3, 1e-3),
        Uniform(0.5, 0.5),
        IntUniform(7, 7),
        IntLogUniform(7, 7),
        Choice(("x",)),
    ],
)
def test_low_equal_high_always_samples_that_value(dist: object) -> None:
    rng = np.random.default_rng(0)
    values = {dist.sample(rng) for _ in range(50)}  # type: ignore[attr-defined]
    assert len(values) == 1
    assert dist.contains(values.pop())  # type: ignore[attr-defined]


@pytest.mark.parametrize("dist", [IntUniform(1, 3), IntLogUniform(1, 4)])
def test_integer_bounds_are_inclusive(dist: IntUniform | IntLogUniform) -> None:
    rng = np.random.default_rng(1)
    values = {dist.sample(rng) for _ in range(2000)}
    assert values == set(range(int(dist.low), int(dist.high) + 1))


@pytest.mark.parametrize(
    "dist", [LogUniform(1e-6, 10.0), Uniform(0.0, 0.9), IntLogUniform(16, 512)]
)
def test_samples_stay_inside_bounds(dist: LogUniform | Uniform | IntLogUniform) -> None:
    rng = np.random.default_rng(2)
    samples = np.array([dist.sample(rng) for _ in range(5000)])
    assert samples.min() >= dist.low
    assert samples.max() <= dist.high


def test_log_uniform_is_uniform_in_log10() -> None:
    # Kolmogorov-Smirnov against U(-6, 1) on log10 of the samples (the seed's
    # `10 ** uniform(-6, 1)`); a fixed seed keeps the test deterministic.
    rng = np.random.default_rng(12345)
    dist = LogUniform(1e-6, 10.0)
    logs = np.log10([dist.sample(rng) for _ in range(4000)])
    assert stats.kstest(logs, stats.uniform(loc=-6, scale=7).cdf).pvalue > 0.01
    # The same test rejects linear-uniform samples, so it has the power to fail.
    linear = np.log10(np.random.default_rng(12345).uniform(1e-6, 10.0, 4000))
    assert stats.kstest(linear, stats.uniform(loc=-6, scale=7).cdf).pvalue < 1e-6


def test_same_seed_same_params_different_trial_different_params() -> None:
    space = parse_space(SPACE_JSON)
    first = sample_params(space, trial_rng(7, 3))
    assert sample_params(space, trial_rng(7, 3)) == first
    assert sample_params(space, trial_rng(7, 4)) != first
    assert sample_params(space, trial_rng(8, 3)) != first


def _sample_in_child(queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    queue.put(sample_params(parse_space(SPACE_JSON), trial_rng(7, 3)))


def test_same_seed_same_params_in_a_freshly_spawned_process() -> None:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_sample_in_child, args=(queue,))
    child.start()
    try:
        from_child = queue.get(timeout=60)
    finally:
        child.join(timeout=60)
    assert from_child == sample_params(parse_space(SPACE_JSON), trial_rng(7, 3))
