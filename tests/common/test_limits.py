"""Hard limits of a range: spec form, validation, defaults for built-in models."""

from __future__ import annotations

import pytest

from gridless.common.errors import SpecError
from gridless.common.limits import BUILTIN_LIMITS, default_limits, is_builtin_model
from gridless.common.space import IntLogUniform, LogUniform, parse_space, space_to_json
from gridless.common.spec import parse_spec
from tests.conftest import TINY_SPEC


def test_limits_round_trip_through_json_and_survive_new_bounds() -> None:
    raw = {"hidden": {"int_log_uniform": [16, 512], "limits": [8, 4096]}}
    space = parse_space(raw)
    assert space["hidden"] == IntLogUniform(16, 512, (8, 4096))
    assert space_to_json(space) == raw
    assert next(iter(space_to_json(space)["hidden"])) == "int_log_uniform"  # the kind first
    narrowed = space["hidden"].with_bounds(32, 100)  # type: ignore[attr-defined]
    assert narrowed.limits == (8, 4096)
    assert parse_space({"x": {"uniform": [0, 1]}})["x"].limits is None  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"int_log_uniform": [16, 512], "limits": [32, 4096]},
            "space.p: int_log_uniform: the range must lie inside its limits (`limits[0] <= low "
            "<= high <= limits[1]`), but got [16, 512] and limits [32, 4096]",
        ),
        (
            {"log_uniform": [1e-3, 1.0], "limits": [0.0, 10.0]},
            "space.p: log_uniform limits: `low > 0` must hold for a log scale, but got "
            "low=0.0, high=10.0",
        ),
        (
            {"int": [1, 4], "limits": [0.5, 8]},
            "space.p: int limits: `low` must be an integer, but got low=0.5",
        ),
        (
            {"uniform": [0.0, 0.5], "limits": [0.0]},
            "space.p: uniform: `limits` must be [low, high], but got [0.0]",
        ),
        (
            {"choice": ["a", "b"], "limits": [0, 1]},
            "space.p: choice: has no limits; limits bound a numeric range",
        ),
        (
            {"limits": [0, 1]},
            "space.p: must be a mapping with exactly one of uniform, log_uniform, int, "
            "int_log_uniform, choice, but got {'limits': [0, 1]}",
        ),
    ],
)
def test_bad_limits_name_the_rule_and_echo_the_values(raw: object, message: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_space({"p": raw})
    assert str(info.value) == message


def test_a_spec_with_limits_validates_and_a_bad_one_is_refused() -> None:
    space = {**TINY_SPEC["space"], "hidden": {"int_log_uniform": [16, 64], "limits": [8, 256]}}
    spec = parse_spec({**TINY_SPEC, "space": space})
    assert spec.distributions()["hidden"].limits == (8, 256)  # type: ignore[attr-defined]
    bad = {**TINY_SPEC["space"], "hidden": {"int_log_uniform": [16, 64], "limits": [32, 256]}}
    with pytest.raises(SpecError, match="must lie inside its limits"):
        parse_spec({**TINY_SPEC, "space": bad})


def test_defaults_cover_the_built_in_models_only() -> None:
    assert is_builtin_model({"model": "numpy.mlp"})
    assert is_builtin_model({"model": "torch.convnet"})
    assert not is_builtin_model({"model": "examples.custom_model:build"})
    assert not is_builtin_model({"train": "train:main"})
    assert default_limits({"model": "numpy.mlp"})["hidden"] == (1, 4096)
    assert default_limits({"train": "train:main", "model": "numpy.mlp"}) == {}
    # every default is a valid range of its own, and holds the built-in default value
    from gridless.worker.trainer import HYPERPARAMS

    for name, (low, high) in BUILTIN_LIMITS.items():
        assert name in HYPERPARAMS, name
        assert low < high, name
        default = HYPERPARAMS[name]
        if default is not None:
            assert low <= default <= high, name
    LogUniform(1e-3, 1.0, BUILTIN_LIMITS["learning_rate"])  # validates
