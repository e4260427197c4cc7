"""Study specs: YAML into a validated model; every refusal names the field and the rule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gridless.common.errors import SpecError
from gridless.common.spec import load_spec, parse_spec
from tests.conftest import TINY_SPEC, tiny_spec

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_shipped_examples_load(path: Path) -> None:
    spec = load_spec(path)
    assert spec.total_trials() >= 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"learning_rate": 0.1},
            "learning_rate: unknown key; check its spelling against the documented spec",
        ),
        ({"stages": []}, "stages: List should have at least 1 item after validation, not 0"),
        (
            {"stages": [{"trials": 0, "epochs": 1}]},
            "stages.0.trials: Input should be greater than or equal to 1",
        ),
        (
            {"stages": [{"trials": 1, "epochs": 1, "epoch": 2}]},
            "stages.0.epoch: unknown key; did you mean 'epochs'? (the keys here: epochs, trials)",
        ),
        (
            {"metric": "accuracy"},
            "metric: say which way 'accuracy' is better: metric: {name: accuracy, mode: max} "
            "or mode: min (short forms: val_accuracy, val_loss, val_r2, val_rmse)",
        ),
        (
            {"metric": {"name": "val_f1", "mode": "up"}},
            "metric.mode: must be min or max, but got 'up'",
        ),
        (
            {"metric": {"name": "epoch", "mode": "max"}},
            "metric.name: 'epoch' is a reserved report field; valid metric names exclude "
            "attempt, checkpoint, diverged, epoch, seconds, stats, warnings, worker_id",
        ),
        (
            {"metric": {"name": "9lives", "mode": "max"}},
            "metric.name: a metric name is a letter then letters, digits or _ (at most 32), "
            "but got '9lives'",
        ),
        (
            {"train": "train:main", "model": "torch.mlp"},
            "train: a study names either model: (a built-in or a trainer factory) or train: "
            "(your training function), not both",
        ),
        (
            {"train": "train.main"},
            "train: expected module:function (e.g. train: train:main for main() in train.py "
            "beside the spec), but got 'train.main'",
        ),
        (
            {"predict": "hooks:predict", "evaluate": "hooks:evaluate"},
            "predict: only a train: study names ensemble hooks; built-in models ensemble "
            "without them",
        ),
        (
            {"train": "train:main", "predict": "hooks:predict"},
            "evaluate: ensembles of your models need both predict: and evaluate: "
            "(docs/user-code.md#ensembles), but the spec names only predict:",
        ),
        (
            {"train": "train:main", "predict": "hooks:p", "evaluate": "hooks"},
            "evaluate: expected module:function (e.g. evaluate: train:evaluate for evaluate() "
            "in train.py beside the spec), but got 'hooks'",
        ),
        (
            {"train": "a b:c"},
            "train: String should match pattern "
            "'^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$'",
        ),
        (
            {"metric": {"name": "val_f1"}},
            "metric.mode: say which way 'val_f1' is better: metric: {name: val_f1, mode: max} "
            "or mode: min",
        ),
        ({"name": "../evil"}, "name: String should match pattern '^[A-Za-z0-9][A-Za-z0-9._-]*$'"),
        (
            {"space": {"lr": {"log_uniform": [0, 1]}}},
            "space.lr: log_uniform: `low > 0` must hold for a log scale, but got low=0, high=1",
        ),
        ({"space": {}}, "space: must name at least one parameter"),
        ({"fixed": {"momentum": float("nan")}}, "fixed.momentum: must be finite, but got nan"),
    ],
)
def test_bad_specs_are_refused_with_one_line(change: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec({**TINY_SPEC, **change})
    assert str(info.value) == message
    assert "\n" not in str(info.value)


def test_top_level_must_be_a_mapping() -> None:
    with pytest.raises(SpecError, match="must be a mapping at the top level, but got list"):
        parse_spec([1, 2])


def test_load_spec_reports_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"nope.yaml: cannot read the spec"):
        load_spec(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match=r"bad.yaml: not valid YAML"):
        load_spec(bad)


def test_yaml_non_finite_bounds_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "name: s\nspace:\n  lr: {log_uniform: [1.0e-3, .inf]}\nstages:\n  - {trials: 1, epochs: 1}\n"
    )
    with pytest.raises(
        SpecError, match=r"^space.lr: log_uniform: `high` must be finite, but got high=inf$"
    ):
        load_spec(path)


def test_defaults_and_direction() -> None:
    spec = parse_spec(
        {"name": "d", "space": {"lr": {"uniform": [0, 1]}}, "stages": [{"trials": 2, "epochs": 1}]}
    )
    assert (spec.model, spec.dataset, spec.metric, spec.seed) == (
        "numpy.mlp",
        "digits",
        "val_accuracy",
        0,
    )
    assert spec.maximize
    assert not parse_spec({**TINY_SPEC, "metric": "val_loss"}).maximize


@pytest.mark.parametrize(
    ("metric", "name", "maximize"),
    [
        ("val_accuracy", "val_accuracy", True),
        ("val_loss", "val_loss", False),
        ("val_r2", "val_r2", True),
        ({"name": "val_r2", "mode": "max"}, "val_r2", True),
        ({"name": "rmse", "mode": "min"}, "rmse", False),
        ({"name": "val_loss"}, "val_loss", False),
    ],
)
def test_the_metric_has_a_name_and_a_direction(metric: Any, name: str, maximize: bool) -> None:
    spec = parse_spec({**TINY_SPEC, "metric": metric})
    assert (spec.objective.name, spec.maximize) == (name, maximize)


def test_a_train_function_replaces_the_model() -> None:
    raw = {k: v for k, v in TINY_SPEC.items() if k != "model"}
    spec = parse_spec({**raw, "train": "my_project.train:main"})
    assert spec.train == "my_project.train:main"


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        (
            {"gpu": 1.5},
            "resources.gpu: a trial asks for a fraction of one GPU or a whole number of them, but got 1.5",
        ),
        ({"gpu": -1}, "resources.gpu: Input should be greater than or equal to 0"),
        ({"cpu": 0}, "resources.cpu: Input should be greater than 0"),
        (
            {"cpu": "two"},
            "resources.cpu: Input should be a valid number, unable to parse string as a number",
        ),
        (
            {"gpu": 0.5},
            "resources.gpu: model numpy.mlp is a NumPy model and trains on CPUs only; ask for no GPU, or use its torch twin",
        ),
    ],
)
def test_bad_resources_are_refused_before_anything_starts(
    resources: dict[str, Any], message: str
) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec({**TINY_SPEC, "resources": resources})
    assert str(info.value) == message


def test_resources_default_to_one_cpu_and_allow_gpu_fractions() -> None:
    assert (tiny_spec().resources.cpu, tiny_spec().resources.gpu) == (1.0, 0.0)
    spec = parse_spec({**TINY_SPEC, "model": "torch.mlp", "resources": {"gpu": 0.25}})
    assert spec.resources.gpu == 0.25
    assert (
        parse_spec({**TINY_SPEC, "model": "torch.mlp", "resources": {"gpu": 2}}).resources.gpu == 2
    )


ENQUEUE_SPACE = {
    "lr": {"log_uniform": [1e-4, 1e-1]},
    "hidden": {"int": [16, 64]},
    "act": {"choice": ["relu", "tanh"]},
}


def enqueue_spec(*configs: dict[str, object]) -> object:
    return parse_spec(
        {
            "name": "q",
            "space": ENQUEUE_SPACE,
            "stages": [{"trials": 3, "epochs": 1}],
            "enqueue": list(configs),
        }
    )


@pytest.mark.parametrize(
    ("configs", "message"),
    [
        (
            [{"lr": 0.01, "hidden": 32, "act": "relu", "width": 3}],
            "enqueue[0].width: not a parameter of the space (act, hidden, lr)",
        ),
        ([{"lr": 0.01, "hidden": 32}], "enqueue[0]: gives no value for act"),
        (
            [{"lr": "fast", "hidden": 32, "act": "relu"}],
            "enqueue[0].lr: must be a number, but got 'fast'",
        ),
        (
            [{"lr": -1.0, "hidden": 32, "act": "relu"}],
            "enqueue[0].lr: a log-scale parameter must be > 0, but got -1.0",
        ),
        (
            [{"lr": 0.01, "hidden": 32, "act": "gelu"}],
            "enqueue[0].act: 'gelu' is not one of the options ['relu', 'tanh']",
        ),
        (
            [{"lr": 0.01, "hidden": 32, "act": "relu"}] * 4,
            "enqueue: 4 configurations, but the first stage runs 3 trials: enqueue at most 3",
        ),
    ],
)
def test_enqueued_configurations_are_validated_against_the_space(
    configs: list[dict[str, object]], message: str
) -> None:
    with pytest.raises(SpecError) as caught:
        enqueue_spec(*configs)
    assert str(caught.value) == message


def test_an_enqueued_value_outside_its_range_is_allowed_and_named() -> None:
    spec = enqueue_spec({"lr": 0.5, "hidden": 32, "act": "tanh"})
    assert spec.outside_range() == [  # type: ignore[attr-defined]
        "enqueue[0].lr = 0.5 lies outside {'log_uniform': [0.0001, 0.1]}"
    ]


@pytest.mark.parametrize(
    ("change", "close"),
    [
        (
            {"early_stoping": {"rule": "none"}},
            "early_stoping: unknown key; did you mean 'early_stopping'?",
        ),
        ({"stop": {"targt": 0.9}}, "stop.targt: unknown key; did you mean 'target'?"),
    ],
)
def test_a_misspelt_key_gets_the_close_match(change: dict[str, Any], close: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec({**TINY_SPEC, **change})
    assert str(info.value).startswith(close)
