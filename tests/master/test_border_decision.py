"""Border decisions from the scores, as pure functions: a significant trend of the score
toward an edge moves that edge (and never the other one), a "too low" always moves the
upper edge, a parameter the scores ignore is not extended, limits hold, and added
stages fit the plan's epochs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gridless.common.limits import default_limits, relative_limits
from gridless.common.metric import Metric
from gridless.common.space import (
    Distribution,
    IntLogUniform,
    IntUniform,
    LogUniform,
    NumericDistribution,
    Uniform,
    parse_space,
    sample_params,
)
from gridless.master.evidence import (
    TrialOutcome,
    learning_rate_flags,
    nothing_learned,
    score_trends,
)
from gridless.master.narrowing import (
    TREND_Z,
    NarrowingPolicy,
    Trend,
    border_decision,
    narrow_space,
)
from gridless.master.stages import _shrink

MAX = Metric.of("val_f1", maximize=True)
UP = Trend(z=4.0, rho=0.9, n=20)
DOWN = Trend(z=-4.0, rho=-0.9, n=20)
FLAT = Trend(z=0.3, rho=0.05, n=20)


def decide(position: float | None, trend: Trend, **kw: object) -> tuple[str, str] | None:
    move = border_decision(position, trend, border=0.1, **kw)  # type: ignore[arg-type]
    return None if move is None else (move.edge, move.move)


@pytest.mark.parametrize(
    ("position", "trend", "kw", "expected"),
    [
        # a significant trend moves the edge it points to, wherever the best sits
        (0.8, UP, {}, ("upper", "walk")),
        (0.6, UP, {}, ("upper", "extend")),  # best further in: extended, not walked
        (0.0, UP, {}, ("upper", "extend")),  # the best on the *lower* border
        (0.2, DOWN, {}, ("lower", "walk")),
        (1.0, DOWN, {}, ("lower", "extend")),
        # the scores ignore it: nothing moves, a best on a border included
        (0.5, FLAT, {}, None),
        (1.0, FLAT, {}, ("upper", "hold")),
        (0.0, FLAT, {}, ("lower", "hold")),
        # a best on a border with a weaker trend toward it extends
        (1.0, Trend(z=1.8, rho=0.4, n=20), {}, ("upper", "extend")),
        # too few trials to test: the seed's rule, a best on a border extends
        (1.0, Trend(n=3), {}, ("upper", "extend")),
        # a trend toward an edge at its limit: nothing to move
        (0.9, UP, {"upper_open": False}, None),
        # a decline toward the edge inside its half: an optimum inside, not a slope past
        (0.9, Trend(z=3.0, rho=0.6, n=30, upper_z=-2.0), {}, ("upper", "hold")),
        # "too low" always moves the upper edge...
        (0.5, FLAT, {"evidence": "too_low"}, ("upper", "extend")),
        (0.5, FLAT, {"evidence": "too_low", "evidence_walks": True}, ("upper", "walk")),
        (1.0, FLAT, {"evidence": "too_low"}, ("upper", "walk")),
        (0.5, UP, {"evidence": "too_low"}, ("upper", "walk")),
        # ...unless the scores fall toward it, or it sits at its limit
        (0.5, DOWN, {"evidence": "too_low"}, ("upper", "hold")),
        (0.5, FLAT, {"evidence": "too_low", "upper_open": False}, ("upper", "hold")),
        # "too high": a walk down only without scores rising upward
        (0.5, FLAT, {"evidence": "too_high", "evidence_walks": True}, ("lower", "walk")),
        (0.5, UP, {"evidence": "too_high", "evidence_walks": True}, ("lower", "hold")),
        (0.5, FLAT, {"evidence": "too_high"}, ("lower", "hold")),  # capped only
    ],
)
def test_border_decision_table(
    position: float | None, trend: Trend, kw: dict[str, object], expected: object
) -> None:
    assert decide(position, trend, **kw) == expected


def test_no_walk_ever_goes_against_a_significant_trend() -> None:
    """Every combination of best position, evidence and open edges: a significant
    upward trend never moves the lower edge outward, nor a downward one the upper."""
    for position in (None, 0.0, 0.05, 0.3, 0.5, 0.9, 1.0):
        for evidence in (None, "too_low", "too_high"):
            for walks in (False, True):
                for opened in ((True, True), (True, False), (False, True)):
                    kw = {
                        "evidence": evidence,
                        "evidence_walks": walks,
                        "lower_open": opened[0],
                        "upper_open": opened[1],
                    }
                    up = border_decision(position, UP, border=0.1, **kw)  # type: ignore[arg-type]
                    assert up is None or up.edge == "upper" or up.move == "hold", (position, kw)
                    down = border_decision(position, DOWN, border=0.1, **kw)  # type: ignore[arg-type]
                    assert down is None or down.edge == "lower" or down.move == "hold", kw


def adamw_stage(seed: int, n: int = 12) -> list[tuple[dict[str, float], float]]:
    """The failure this rule fixes: an AdamW CNN's macro F1 over lr in [1e-5, 1e-4] rises
    with lr (far below its optimum near 1e-3), with noise."""
    rng = np.random.default_rng(seed)
    lrs = 10 ** rng.uniform(-5, -4, size=n)
    return [
        ({"lr": float(lr)}, 0.05 + 0.08 * (math.log10(lr) + 5) + rng.normal(0, 0.01)) for lr in lrs
    ]


@pytest.mark.parametrize("seed", range(5))
def test_scores_rising_with_lr_move_the_upper_edge_even_with_the_best_inside(seed: int) -> None:
    space: dict[str, Distribution] = {"lr": LogUniform(1e-5, 1e-4)}
    scored = adamw_stage(seed)
    # the best sample sits 20 % below the top of the range: no "within 10 %" flag
    scored.append(({"lr": 10**-4.2}, 0.5))
    trends = score_trends(space, scored, objective=MAX)
    assert trends["lr"].z >= TREND_Z
    top = [p for p, _ in sorted(scored, key=lambda ps: -ps[1])[:3]]
    new, flags, decisions = narrow_space(space, top, trends=trends)
    assert [(f.edge, f.on_border) for f in flags] == [("upper", False)]
    assert new["lr"].high > 1e-4  # type: ignore[attr-defined]
    assert "the scores rise toward it (Spearman rho +" in decisions[0].why
    assert flags[0].message.startswith("the scores rise toward the upper border of lr")


def test_a_best_on_the_lower_border_does_not_walk_down_against_the_trend() -> None:
    """One seed's best lr sat on the lower border by chance while the scores rose with lr:
    the range must not walk down."""
    space: dict[str, Distribution] = {"lr": LogUniform(1e-5, 1e-4)}
    scored = adamw_stage(3, n=20)
    scored.insert(0, ({"lr": 1.02e-5}, 0.9))  # a lucky trial at the bottom
    trends = score_trends(space, scored, objective=MAX)
    assert trends["lr"].z >= TREND_Z
    top = [p for p, _ in sorted(scored, key=lambda ps: -ps[1])[:4]]
    new, flags, _ = narrow_space(space, top, trends=trends)
    assert all(f.edge == "upper" for f in flags)
    assert new["lr"].low >= 1e-5  # type: ignore[attr-defined]
    assert new["lr"].high > 1e-4  # type: ignore[attr-defined]


def test_diverged_trials_are_the_worst_scores_of_a_trend() -> None:
    space: dict[str, Distribution] = {"lr": LogUniform(1e-3, 10.0)}
    scored = [({"lr": 10 ** (-3 + i / 5)}, 0.5 + 0.01 * (i % 3)) for i in range(10)]
    diverged = [{"lr": 10 ** (0.2 * i)} for i in range(1, 6)]
    assert abs(score_trends(space, scored, objective=MAX)["lr"].z) < TREND_Z
    with_div = score_trends(space, scored, objective=MAX, diverged=diverged)["lr"]
    assert with_div.z <= -TREND_Z
    assert with_div.n == 15


def test_a_flat_parameter_is_not_extended_on_noise() -> None:
    """120 stage decisions on an objective that ignores three parameters: a range moves
    only when a 1 % trend or a 5 % trend with its best on the border says so by chance
    (4 of them at this seed, measured: 11 with a 20 % lean as support)."""
    raw = {
        "lr": {"log_uniform": [1e-5, 1e-1]},
        "hidden": {"int_log_uniform": [16, 512]},
        "dropout": {"uniform": [0.0, 0.5]},
    }
    policy = NarrowingPolicy.for_study({"train": "m:f", "space": raw})
    rng = np.random.default_rng(0)
    moved = 0
    for _ in range(10):
        space = parse_space(raw)
        for _ in range(4):
            params = [sample_params(space, rng) for _ in range(12)]
            scored = [(p, 0.5 + 0.02 * float(rng.normal())) for p in params]
            trends = score_trends(space, scored, objective=MAX)
            top = [p for p, _ in sorted(scored, key=lambda ps: -ps[1])[:3]]
            new, flags, _ = narrow_space(space, top, policy, trends=trends)
            moved += len(flags)
            for name, d in new.items():
                assert isinstance(d, NumericDistribution)
                lo, hi = policy.limits[name]
                assert lo <= d.low <= d.high <= hi
            space = new
    assert moved <= 8  # of 120 decisions; 4 at this seed


def test_a_too_low_flag_always_moves_the_upper_edge() -> None:
    """A second data set's failure: "25 of 50 trials are too low" and nothing moved."""
    space: dict[str, Distribution] = {"lr": LogUniform(1e-5, 1e-3)}
    lrs = [10 ** (-5 + 2 * i / 49) for i in range(50)]
    trials = [
        TrialOutcome({"lr": lr}, 0.2 + 0.001 * (i % 5), "completed", frozenset({"lr_too_low"}))
        for i, lr in enumerate(lrs[:25])
    ]
    trials += [
        TrialOutcome({"lr": lr}, 0.23 + 0.001 * (i % 7), "completed", frozenset())
        for i, lr in enumerate(lrs[25:])
    ]
    (flag,) = learning_rate_flags(space, trials, param="lr")
    assert flag.edge == "upper"
    usable = sorted(trials, key=lambda o: -(o.score or 0))[:10]
    new, flags, _ = narrow_space(space, [o.params for o in usable], evidence_flags=[flag])
    assert new["lr"].high > 1e-3  # type: ignore[attr-defined]
    assert flags[0].held is None


def test_nothing_learned_is_judged_against_the_studys_spread_not_chance() -> None:
    """A macro-F1 model at 0.18-0.23 below lr 1e-4 while trials above it reach 0.9: the
    low ones learned nothing (chance accuracy would have said nothing)."""
    space: dict[str, Distribution] = {"lr": LogUniform(1e-6, 1e-2)}
    rng = np.random.default_rng(1)
    lrs = 10 ** rng.uniform(-6, -2, size=30)
    outcomes = [
        TrialOutcome(
            {"lr": float(lr)},
            float(rng.uniform(0.18, 0.23) if lr < 1e-4 else rng.uniform(0.6, 0.9)),
            "completed",
        )
        for lr in lrs
    ]
    judged = nothing_learned(outcomes, study_best=0.9, objective=MAX, param="lr", space=space)
    flat = [o for o in judged if "flat" in o.codes]
    assert flat
    assert all(o.params["lr"] < 1e-4 for o in flat)
    assert all(o.too_low for o in flat)
    # the same plateau *above* those that learned is no "too low"
    mirrored = [TrialOutcome({"lr": 1e-8 / o.params["lr"]}, o.score, o.state) for o in outcomes]
    judged = nothing_learned(mirrored, study_best=0.9, objective=MAX, param="lr", space=space)
    assert not any("flat" in o.codes for o in judged)
    # no spread at all, or too few trials: nothing changes
    same = [TrialOutcome({"lr": 1e-4}, 0.5, "completed")] * 10
    assert nothing_learned(same, study_best=0.5, objective=MAX, param="lr", space=space) == same


@pytest.mark.parametrize(
    ("dist", "expected"),
    [
        (LogUniform(1e-5, 1e-4), (1e-8, 1e-1)),  # 3 decades each side
        (IntLogUniform(16, 512), (1.0, 5120.0)),  # 1 decade each side, integers >= 1
        (IntLogUniform(100, 200), (10.0, 2000.0)),
        (Uniform(0.0, 0.5), (0.0, 1.5)),  # twice the width; started at 0: stays >= 0
        (Uniform(-1.0, 1.0), (-5.0, 5.0)),
        (IntUniform(1, 8), (1.0, 22.0)),  # started at 1: stays >= 1
        (IntUniform(0, 4), (0.0, 12.0)),
        (Uniform(2.0, 2.0), (0.0, 6.0)),  # no width: its magnitude
    ],
)
def test_relative_limits(dist: NumericDistribution, expected: tuple[float, float]) -> None:
    lo, hi = relative_limits(dist)
    assert lo == pytest.approx(expected[0])
    assert hi == pytest.approx(expected[1])


def test_default_limits_of_a_users_function_and_the_tighter_builtin() -> None:
    spec = {
        "train": "m:f",
        "space": {
            "hidden": {"int_log_uniform": [16, 512]},
            "reg": {"log_uniform": [1e-6, 1e-2]},
            "dropout": {"uniform": [0.0, 0.9]},
            "choose": {"choice": ["a", "b"]},
        },
    }
    limits = default_limits(spec)
    assert limits["hidden"] == (1.0, 5120.0)
    assert limits["reg"] == pytest.approx((1e-9, 10.0))
    assert "choose" not in limits
    builtin = default_limits({**spec, "train": None, "model": "numpy.mlp"})
    assert builtin["hidden"] == (1.0, 4096.0)  # the built-in table is tighter
    assert builtin["reg"] == pytest.approx((1e-9, 10.0))  # the relative one is tighter


def test_a_walk_stops_at_its_limit_and_says_so_and_announces_leaving_the_users_range() -> None:
    raw = {"lr": {"log_uniform": [1e-5, 1e-4]}}
    policy = NarrowingPolicy.for_study({"train": "m:f", "space": raw})
    space: dict[str, Distribution] = {"lr": LogUniform(1e-3, 5e-2)}  # after two walks
    new, (flag,), decisions = narrow_space(space, [{"lr": 4.9e-2}], policy, trends={"lr": UP})
    assert new["lr"].high == pytest.approx(0.1)  # type: ignore[attr-defined]
    assert flag.walk
    assert flag.beyond_range
    assert flag.note is not None
    assert "stopped at its limit 0.1" in flag.note
    assert "goes past your range [1e-05, 0.0001]" in flag.message
    assert decisions[0].why.endswith("(stopped at its limits [1e-08, 0.1])")
    # the range at its limit: no flag, no move
    at = {"lr": LogUniform(1e-3, 0.1)}
    new, flags, _ = narrow_space(at, [{"lr": 0.1}], policy, trends={"lr": UP})
    assert flags == []
    assert new["lr"].high == pytest.approx(0.1)  # type: ignore[attr-defined]


def test_an_integer_range_walks_up_and_never_below_one() -> None:
    space: dict[str, Distribution] = {"layers": IntUniform(1, 4)}
    policy = NarrowingPolicy.for_study({"train": "m:f", "space": {"layers": {"int": [1, 4]}}})
    new, (flag,), _ = narrow_space(space, [{"layers": 4}], policy, trends={"layers": UP})
    assert (flag.edge, flag.walk) == ("upper", True)
    assert new["layers"].high == 7  # type: ignore[attr-defined]  # a whole width
    new, flags, _ = narrow_space(space, [{"layers": 1}], policy, trends={"layers": DOWN})
    assert flags == []  # 1 is its floor: nothing below to walk to
    assert new["layers"].low == 1  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("shapes", "room", "expected"),
    [
        ([(10, 1), (10, 1)], 10, [5, 5]),
        ([(10, 1), (3, 20)], 65, [5, 3]),  # the 20-epoch stage keeps its 3 trials
        ([(20, 3), (15, 5), (10, 20)], 268, [16, 12, 8]),
        ([(10, 1), (10, 1)], 100, [10, 10]),
        ([(5, 1)], 0, [3]),  # never below its floor (the caller refuses then)
    ],
)
def test_later_stages_shrink_to_fit_the_budget(
    shapes: list[tuple[int, int]], room: int, expected: list[int]
) -> None:
    keep = _shrink(shapes, room, 3)
    assert keep == expected
    fits = sum(k * e for k, (_, e) in zip(keep, shapes, strict=True)) <= room
    assert fits or keep == [min(t, 3) for t, _ in shapes]


def test_a_small_stage_borrows_the_earlier_stages_trials_inside_its_range() -> None:
    """Three trials are too few to test; the earlier stages' trials inside the range,
    ranked within their own stage (their epochs differ), are not."""
    from gridless.master.evidence import pooled_trends

    space: dict[str, Distribution] = {"lr": LogUniform(1e-3, 1e-2), "width": IntLogUniform(16, 64)}
    rng = np.random.default_rng(2)

    def stage(n: int, offset: float) -> list[tuple[dict[str, float], float]]:
        lrs = 10 ** rng.uniform(-3.5, -1.5, size=n)  # partly outside the range
        widths = rng.integers(16, 65, size=n)
        return [
            ({"lr": float(lr), "width": int(w)}, offset + math.log10(lr) + rng.normal(0, 0.05))
            for lr, w in zip(lrs, widths, strict=True)
        ]

    current, earlier = stage(3, 1.0), [stage(20, 0.0), stage(10, 0.5)]
    assert not score_trends(space, current, objective=MAX)["lr"].tested
    pooled = pooled_trends(space, [current, *earlier], objective=MAX)
    assert pooled["lr"].tested
    assert pooled["lr"].z >= TREND_Z
    assert pooled["lr"].n < 3 + 20 + 10  # only the trials inside [1e-3, 1e-2]
    assert abs(pooled["width"].z) < TREND_Z  # the scores ignore it


def test_strong_too_low_evidence_walks_through_a_noisy_upper_half() -> None:
    """Nothing learned anywhere (digits' plain SGD in [1e-6, 1e-3]): the scores are noise,
    and noise in the upper half must not hold a walk that most trials' failure backs;
    only a significant trend over the whole stage would."""
    noisy = Trend(z=-0.05, rho=-0.01, n=30, upper_z=-2.0)
    assert decide(0.5, noisy, evidence="too_low", evidence_walks=True) == ("upper", "walk")
    assert decide(0.5, noisy, evidence="too_low") == ("upper", "hold")
    assert decide(0.5, DOWN, evidence="too_low", evidence_walks=True) == ("upper", "hold")


def test_a_walk_from_a_sliver_moves_half_the_users_width() -> None:
    raw = {"lr": {"log_uniform": [1e-6, 1e-3]}}
    policy = NarrowingPolicy.for_study({"train": "m:f", "space": raw})
    sliver: dict[str, Distribution] = {"lr": LogUniform(9.5e-4, 1e-3)}
    new, (flag,), _ = narrow_space(sliver, [{"lr": 1e-3}], policy, trends={"lr": UP})
    assert flag.walk
    assert math.log10(new["lr"].high) >= -3.0 + 1.5 - 1e-9  # type: ignore[attr-defined]


def test_a_late_stage_near_the_best_learned_something() -> None:
    """Six trials at 0.970-0.981 after a study whose worst was 0.07: tied near the best,
    not a plateau of nothing learned."""
    space: dict[str, Distribution] = {"lr": LogUniform(0.5, 1.0)}
    scores = [0.9704, 0.9704, 0.9704, 0.9741, 0.9704, 0.9815]
    outcomes = [TrialOutcome({"lr": 0.5 + 0.08 * i}, s, "completed") for i, s in enumerate(scores)]
    judged = nothing_learned(
        outcomes, study_best=0.9815, study_worst=0.07, objective=MAX, param="lr", space=space
    )
    assert not any("flat" in o.codes for o in judged)
