"""Narrowing and border flags: pure functions, boundary values."""

from __future__ import annotations

import math

import pytest

from gridless.common.space import Choice, IntLogUniform, LogUniform, Uniform
from gridless.master.narrowing import NarrowingPolicy, border_flags, narrow_space

LR = LogUniform(1e-6, 1e-1)


@pytest.mark.parametrize(
    ("value", "edge"),
    [
        (1e-6, "lower"),  # exactly on the edge
        (10 ** (-6 + 0.5), "lower"),  # exactly at the border fraction (0.1 of 5 decades)
        (10 ** (-6 + 0.51), None),  # just inside
        (1e-3, None),
        (10 ** (-1 - 0.51), None),
        (10 ** (-1 - 0.5), "upper"),
        (1e-1, "upper"),
    ],
)
def test_border_flags_on_log_scale(value: float, edge: str | None) -> None:
    flags = border_flags({"learning_rate": LR}, {"learning_rate": value})
    assert [f.edge for f in flags] == ([edge] if edge else [])


def test_flag_message_names_param_value_edge_and_range() -> None:
    (flag,) = border_flags({"learning_rate": LR}, {"learning_rate": 0.087})
    assert flag.message == "best learning_rate 0.087 is on the upper border of [1e-06, 0.1]"


def test_degenerate_range_is_never_flagged() -> None:
    assert border_flags({"x": Uniform(0.5, 0.5)}, {"x": 0.5}) == []


def test_hard_limit_edges_are_not_flagged() -> None:
    # dropout at 0.0 cannot move below 0: no flag on a range that starts at the hard limit
    assert border_flags({"dropout": Uniform(0.0, 0.9)}, {"dropout": 0.0}) == []
    assert [f.edge for f in border_flags({"dropout": Uniform(0.1, 0.9)}, {"dropout": 0.1})] == [
        "lower"
    ]


def test_narrowing_spans_top_values_plus_margin_in_log_scale() -> None:
    top = [{"learning_rate": 1e-3}, {"learning_rate": 1e-4}, {"learning_rate": 1e-2}]
    space, flags, decisions = narrow_space(
        {"learning_rate": LR}, top, NarrowingPolicy(margin=0.25)
    )
    new = space["learning_rate"]
    assert flags == []
    assert isinstance(new, LogUniform)
    # top span is [-4, -2] in log10; margin 0.25 * 2 = 0.5 decades each side
    assert math.log10(new.low) == pytest.approx(-4.5)
    assert math.log10(new.high) == pytest.approx(-1.5)
    assert decisions[0].why == "span of the top 3 trials plus a margin"
    assert decisions[0].old == {"log_uniform": [1e-6, 1e-1]}


def test_narrowing_never_leaves_the_old_range_without_a_flag() -> None:
    top = [{"learning_rate": 1e-3}, {"learning_rate": 2e-5}]
    space, flags, _ = narrow_space({"learning_rate": LR}, top, NarrowingPolicy(margin=2.0))
    assert flags == []
    assert space["learning_rate"].low >= LR.low  # type: ignore[attr-defined]
    assert space["learning_rate"].high <= LR.high  # type: ignore[attr-defined]


def test_single_top_value_keeps_a_minimum_width() -> None:
    space, _, _ = narrow_space(
        {"learning_rate": LR}, [{"learning_rate": 1e-3}], NarrowingPolicy(min_width=0.2)
    )
    new = space["learning_rate"]
    width = math.log10(new.high) - math.log10(new.low)  # type: ignore[attr-defined]
    assert width == pytest.approx(0.2 * 5)


def test_flagged_upper_edge_extends_past_it() -> None:
    top = [{"learning_rate": 0.09}, {"learning_rate": 0.05}]
    space, flags, decisions = narrow_space({"learning_rate": LR}, top, NarrowingPolicy(extend=0.5))
    assert [f.edge for f in flags] == ["upper"]
    assert space["learning_rate"].high == pytest.approx(10 ** (-1 + 2.5))  # type: ignore[attr-defined]
    # no trends given: nothing tests one, so the best value on the border extends
    assert decisions[0].why == "on the upper border, no trend tested: extended above it"


def test_extension_respects_hard_limits() -> None:
    space, flags, _ = narrow_space({"dropout": Uniform(0.2, 0.9)}, [{"dropout": 0.89}])
    assert [f.edge for f in flags] == ["upper"]
    assert space["dropout"].high == 0.999  # type: ignore[attr-defined]
    space, _, _ = narrow_space({"hidden": IntLogUniform(2, 512)}, [{"hidden": 2}])
    assert space["hidden"].low == 1  # type: ignore[attr-defined]


def test_choices_keep_only_options_among_top_trials() -> None:
    space, _, decisions = narrow_space(
        {"update": Choice(("sgd", "momentum", "adam"))}, [{"update": "adam"}, {"update": "sgd"}]
    )
    assert space["update"] == Choice(("sgd", "adam"))
    assert decisions[0].why == "kept the options found among the top 2 trials"


def test_no_scored_trials_keeps_the_space() -> None:
    space, flags, decisions = narrow_space({"learning_rate": LR}, [])
    assert space == {"learning_rate": LR}
    assert flags == []
    assert decisions[0].why == "no scored trial: range kept"


@pytest.mark.parametrize(
    "dist", [IntLogUniform(8, 512), LogUniform(1e-4, 10.0), Uniform(0.0, 0.9)]
)
def test_unflagged_narrowing_stays_inside_the_old_range(dist: object) -> None:
    # top values at both ends of the range (but the best one inside): the margin must not
    # push the new range past the old bounds, even through log10 round-off
    space = {"p": dist}
    lo, hi = dist.low, dist.high  # type: ignore[attr-defined]
    mid = dist.from_scale((dist.to_scale(lo) + dist.to_scale(hi)) / 2)  # type: ignore[attr-defined]
    new, flags, _ = narrow_space(
        space, [{"p": mid}, {"p": lo}, {"p": hi}], NarrowingPolicy(margin=1.0)
    )
    assert flags == []
    assert (new["p"].low, new["p"].high) == (lo, hi)  # type: ignore[attr-defined]
