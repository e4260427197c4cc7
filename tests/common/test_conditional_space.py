"""Conditional parameters (`when:`): validation, sampling, Optuna's define-by-run, pruning."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import optuna
import pytest

from gridless.common.errors import SpecError
from gridless.common.space import (
    Choice,
    Condition,
    Uniform,
    active_names,
    parse_space,
    prune_conditions,
    sample_params,
    sampling_order,
    space_to_json,
    suggest_params,
)
from gridless.common.spec import check_configs, parse_spec, trial_rng

SPACE = {
    "learning_rate": {"log_uniform": [1e-4, 1e-1]},
    "optimizer": {"choice": ["sgd", "nesterov", "adam"]},
    "momentum": {"uniform": [0.5, 0.99], "when": {"optimizer": ["sgd", "nesterov"]}},
    "beta2": {"uniform": [0.9, 0.999], "when": {"optimizer": "adam"}},
}


def test_a_condition_is_parsed_and_round_trips() -> None:
    space = parse_space(SPACE)
    assert space["momentum"] == Uniform(
        0.5, 0.99, None, (Condition("optimizer", ("sgd", "nesterov")),)
    )
    assert space["beta2"].when == (Condition("optimizer", ("adam",)),)
    # one value is written bare, as a person writes it
    assert space_to_json(space)["beta2"] == {
        "uniform": [0.9, 0.999],
        "when": {"optimizer": "adam"},
    }
    assert parse_space(space_to_json(space)) == space


@pytest.mark.parametrize(
    ("param", "message"),
    [
        (
            {"uniform": [0, 1], "when": {"optimiser": "sgd"}},
            "space.momentum.when.optimiser: not a parameter of the space (learning_rate, "
            "optimizer, momentum); a condition names a choice parameter",
        ),
        (
            {"uniform": [0, 1], "when": {"learning_rate": 0.1}},
            "space.momentum.when.learning_rate: learning_rate must be a choice to be a "
            "condition, but it is log_uniform",
        ),
        (
            {"uniform": [0, 1], "when": {"optimizer": "rmsprop"}},
            "space.momentum.when.optimizer: 'rmsprop' is not an option of optimizer "
            "['sgd', 'adam']",
        ),
        (
            {"uniform": [0, 1], "when": {"momentum": 0.5}},
            "space.momentum.when.momentum: a parameter cannot depend on itself",
        ),
        (
            {"uniform": [0, 1], "when": "sgd"},
            "space.momentum: when: expects {parent: value} or {parent: [values]} naming a "
            "choice parameter, e.g. when: {optimizer: sgd}, but got 'sgd'",
        ),
        (
            {"uniform": [0, 1], "when": {"optimizer": []}},
            "space.momentum: when.optimizer: name at least one value of optimizer, but got []",
        ),
    ],
)
def test_a_bad_condition_names_the_parameter_and_the_rule(
    param: dict[str, Any], message: str
) -> None:
    raw = {
        "learning_rate": {"log_uniform": [1e-4, 1e-1]},
        "optimizer": {"choice": ["sgd", "adam"]},
        "momentum": param,
    }
    with pytest.raises(SpecError) as err:
        parse_space(raw)
    assert str(err.value) == message


def test_a_cycle_of_conditions_is_refused_naming_it() -> None:
    raw = {
        "a": {"choice": ["x", "y"], "when": {"b": "u"}},
        "b": {"choice": ["u", "v"], "when": {"a": "x"}},
    }
    with pytest.raises(SpecError, match=r"space: the conditions form a cycle: a -> b -> a"):
        parse_space(raw)


def test_a_boolean_condition_does_not_match_the_integer_one() -> None:
    space = parse_space(
        {"bn": {"choice": [True, False]}, "m": {"uniform": [0.1, 0.2], "when": {"bn": True}}}
    )
    assert active_names(space, {"bn": True}) == ["bn", "m"]
    assert active_names(space, {"bn": 1}) == ["bn"]
    with pytest.raises(SpecError, match=r"space.m.when.bn: 1 is not an option of bn"):
        parse_space({"bn": {"choice": [True, False]}, "m": {"uniform": [0, 1], "when": {"bn": 1}}})


def test_an_absent_parameter_is_no_key_and_a_present_one_in_range() -> None:
    space = parse_space(SPACE)
    seen = {"sgd": 0, "nesterov": 0, "adam": 0}
    for n in range(300):
        params = sample_params(space, trial_rng(7, n))
        seen[str(params["optimizer"])] += 1
        if params["optimizer"] == "adam":
            assert set(params) == {"learning_rate", "optimizer", "beta2"}
            assert 0.9 <= float(params["beta2"]) <= 0.999
        else:
            assert set(params) == {"learning_rate", "optimizer", "momentum"}
            assert 0.5 <= float(params["momentum"]) <= 0.99
        assert list(params) == [k for k in SPACE if k in params]  # the space's order
    assert min(seen.values()) > 60  # every branch is sampled


def test_a_child_listed_before_its_parent_is_sampled_after_it() -> None:
    space = parse_space(
        {
            "momentum": {"uniform": [0.5, 0.99], "when": {"optimizer": "sgd"}},
            "nesterov": {"choice": [True, False], "when": {"optimizer": "sgd"}},
            "dampening": {"uniform": [0.0, 0.5], "when": {"nesterov": False}},
            "optimizer": {"choice": ["sgd", "adam"]},
        }
    )
    assert sampling_order(space) == ["optimizer", "momentum", "nesterov", "dampening"]
    draws = [sample_params(space, trial_rng(1, n)) for n in range(200)]
    assert all("momentum" not in d for d in draws if d["optimizer"] == "adam")
    assert all("dampening" not in d for d in draws if d.get("nesterov") is not False)
    assert any("dampening" in d for d in draws)  # a grandchild is reached


def test_a_space_without_conditions_samples_as_before() -> None:
    space = parse_space({k: v for k, v in SPACE.items() if "when" not in v})
    for n in range(20):
        rng, again = trial_rng(3, n), trial_rng(3, n)
        assert sample_params(space, rng) == {k: d.sample(again) for k, d in space.items()}


def test_prune_cuts_a_condition_to_the_options_its_parent_kept() -> None:
    space = parse_space(SPACE)
    narrowed = {**space, "optimizer": Choice(("nesterov", "adam"))}
    pruned = prune_conditions(narrowed)
    assert pruned["momentum"].when == (Condition("optimizer", ("nesterov",)),)
    only_adam = prune_conditions({**space, "optimizer": Choice(("adam",))})
    assert list(only_adam) == ["learning_rate", "optimizer", "beta2"]  # momentum cannot hold
    parse_space(space_to_json(only_adam))  # and what is left is a valid space


def test_optuna_define_by_run_suggests_parents_first_and_skips_inactive_children() -> None:
    space = parse_space(SPACE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(
            seed=0, multivariate=True, group=True, n_startup_trials=5
        )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for _ in range(25):
        trial = study.ask()
        params = suggest_params(trial, space)
        assert trial.params == params
        assert set(params) == set(active_names(space, params))
        # the best region: sgd with a high momentum
        score = params.get("momentum", 0.0) if params["optimizer"] == "sgd" else 0.1
        study.tell(trial, score)
    late = [t.params for t in study.trials[15:]]
    assert sum(p["optimizer"] == "sgd" for p in late) > len(late) / 3


def test_an_enqueued_configuration_gives_a_conditional_value_exactly_when_it_holds() -> None:
    space = parse_space(SPACE)
    check_configs(space, [{"learning_rate": 0.01, "optimizer": "adam", "beta2": 0.99}], where="q")
    with pytest.raises(SpecError, match=r"^q\[0\]: gives no value for momentum$"):
        check_configs(space, [{"learning_rate": 0.01, "optimizer": "sgd"}], where="q")
    with pytest.raises(
        SpecError,
        match=r"^q\[0\]\.momentum: applies only when optimizer is sgd or nesterov; leave it "
        r"out of this configuration$",
    ):
        check_configs(
            space,
            [{"learning_rate": 0.01, "optimizer": "adam", "beta2": 0.99, "momentum": 0.9}],
            where="q",
        )


def test_the_spec_stores_the_kind_before_when_whatever_the_yaml_order() -> None:
    raw = {
        "name": "c",
        "space": {
            "optimizer": {"choice": ["sgd", "adam"]},
            "momentum": {"when": {"optimizer": "sgd"}, "uniform": [0.5, 0.9]},
        },
        "stages": [{"trials": 2, "epochs": 1}],
    }
    spec = parse_spec(raw)
    assert list(spec.space["momentum"]) == ["uniform", "when"]
    assert np.isclose(spec.distributions()["momentum"].high, 0.9)  # type: ignore[attr-defined]
