"""Conditional parameters on the master: narrowing, border flags and TPE count only the
trials that have the parameter."""

from __future__ import annotations

from typing import Any

from gridless.common.metric import Metric
from gridless.common.space import Choice, Condition, parse_space, suggest_params
from gridless.master.narrowing import NarrowingPolicy, narrow_space
from gridless.master.tpe import TpePoint, tpe_sampler, tpe_study

SPACE = parse_space(
    {
        "learning_rate": {"log_uniform": [1e-4, 1e-1]},
        "optimizer": {"choice": ["sgd", "adam"]},
        "momentum": {"uniform": [0.5, 0.99], "when": {"optimizer": "sgd"}},
    }
)
POLICY = NarrowingPolicy(min_top=3)


def _top(*momenta: float | None) -> list[dict[str, Any]]:
    """Top trials (best first): a momentum value is an sgd trial, None an adam one."""
    return [
        {"learning_rate": 1e-2, "optimizer": "adam"}
        if m is None
        else {"learning_rate": 1e-2, "optimizer": "sgd", "momentum": m}
        for m in momenta
    ]


def test_a_conditional_range_narrows_around_the_trials_that_have_it() -> None:
    new, _, decisions = narrow_space(SPACE, _top(None, 0.8, 0.82, None, 0.85), POLICY)
    momentum = new["momentum"]
    assert isinstance(momentum, type(SPACE["momentum"]))
    assert 0.5 < momentum.low <= 0.8
    assert 0.85 <= momentum.high < 0.99
    assert momentum.when == (Condition("optimizer", ("sgd",)),)  # the condition stays
    why = {d.param: d.why for d in decisions}
    assert why["momentum"] == "span of the top 3 trials plus a margin"


def test_a_conditional_parameter_with_too_few_present_trials_keeps_its_range() -> None:
    new, flags, decisions = narrow_space(SPACE, _top(0.98, None, None), POLICY)
    assert new["momentum"] == SPACE["momentum"]
    assert not [f for f in flags if f.param == "momentum"]  # 0.98 is on the border, unflagged
    why = {d.param: d.why for d in decisions}
    assert (
        why["momentum"]
        == "only 1 of the top trials have this parameter (fewer than 3): range kept"
    )


def test_a_border_flag_reads_the_best_trial_that_has_the_parameter() -> None:
    # the best trial is an adam one; the best sgd trial's momentum sits on the upper border
    _, flags, _ = narrow_space(SPACE, _top(None, 0.985, 0.9, 0.95), POLICY)
    [flag] = [f for f in flags if f.param == "momentum"]
    assert (flag.edge, flag.value) == ("upper", 0.985)


def test_narrowing_the_parent_away_from_sgd_drops_its_child() -> None:
    top = [{"learning_rate": 1e-2, "optimizer": "adam"}] * 3
    new, _, _ = narrow_space(SPACE, top, POLICY)
    assert new["optimizer"] == Choice(("adam",))
    assert "momentum" not in new  # sgd is gone, and so is its momentum


def test_tpe_learns_from_trials_with_and_without_the_conditional_parameter() -> None:
    points = [
        TpePoint({"learning_rate": 1e-2, "optimizer": "sgd", "momentum": 0.9}, 0.9),
        TpePoint({"learning_rate": 1e-3, "optimizer": "adam"}, 0.5),
        # a trial with a momentum its condition rules out lies outside the space
        TpePoint({"learning_rate": 1e-3, "optimizer": "adam", "momentum": 0.7}, 0.6),
        TpePoint({"learning_rate": 1e-2, "optimizer": "sgd"}, 0.6),  # missing its momentum
    ]
    study = tpe_study(points, SPACE, objective=Metric("val_accuracy", "max"), seed=1)
    assert [t.params for t in study.trials] == [points[0].params, points[1].params]
    sampler = tpe_sampler(SPACE, seed=1)
    assert sampler._multivariate
    assert sampler._group
    for _ in range(5):
        params = suggest_params(study.ask(), SPACE)
        assert ("momentum" in params) == (params["optimizer"] == "sgd")
