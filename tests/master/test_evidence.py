"""Divergence is evidence, border walks that arrive, limits no range crosses:
the pure functions behind the stage controller, boundary values first."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from gridless.common.limits import BUILTIN_LIMITS
from gridless.common.metric import Metric
from gridless.common.space import (
    Distribution,
    IntLogUniform,
    LogUniform,
    NumericDistribution,
    Uniform,
)
from gridless.master.evidence import (
    TrialOutcome,
    boundary,
    learning_rate_flags,
    learning_rate_param,
    score_trends,
)
from gridless.master.narrowing import (
    TREND_Z,
    BorderFlag,
    NarrowingPolicy,
    border_flags,
    hard_limits,
    narrow_space,
)

MAX = Metric.of("val_accuracy", maximize=True)
MIN = Metric.of("val_loss", maximize=False)


def decades(d: Distribution) -> tuple[float, float]:
    assert isinstance(d, NumericDistribution)
    return math.log10(d.low), math.log10(d.high)


def outcome(lr: float, *, state: str = "completed", score: float | None = 0.5, codes: Any = ()):
    return TrialOutcome({"learning_rate": lr}, score, state, frozenset(codes))


# -- trials, not warnings -------------------------------------------------------------


def test_a_trial_counts_once_whatever_number_of_warnings_it_raised() -> None:
    """The issue's "51 of 50 trials diverged": diverged and lr_too_high were added up."""
    space = {"learning_rate": LogUniform(1.0, 1e3)}
    trials = [
        outcome(10 ** (i / 17), state="diverged", score=None, codes={"diverged", "lr_too_high"})
        for i in range(50)
    ]
    (flag,) = learning_rate_flags(space, trials)
    assert flag.evidence is not None
    assert flag.evidence.startswith("50 of 50 trials diverged")
    assert flag.message.startswith("learning_rate range [1, 1e+03] is too high: 50 of 50")


def test_dead_units_count_as_too_high_even_beside_a_tiny_ratio() -> None:
    dead = outcome(20.0, codes={"dead_units", "lr_too_low"})
    assert dead.too_high
    assert not dead.too_low
    assert outcome(1e-7, codes={"lr_too_low"}).too_low
    assert outcome(1.0, state="diverged", score=0.3).diverged
    assert not outcome(1.0, state="diverged", score=0.3).usable


@pytest.mark.parametrize(
    ("bad", "bad_above", "expected"),
    [
        ([False, False, True, True], True, 1.5),  # halfway between last good, first bad
        ([True, True, True, True], True, 0.0),  # all bad: at the lowest value
        ([False, False, False, True], True, 2.5),
        ([False, True, False, True], True, 2.5),  # a tie: the smaller bad region
        ([True, True, False, False], False, 1.5),
        ([True, True, True, True], False, 3.0),  # all bad: at the highest value
        ([True, False, True, False], False, 0.5),  # a tie: the smaller bad region
    ],
)
def test_boundary_is_the_split_with_fewest_trials_on_the_wrong_side(
    bad: list[bool], bad_above: bool, expected: float
) -> None:
    assert boundary([0.0, 1.0, 2.0, 3.0], bad, bad_above=bad_above) == expected
    assert boundary([3.0, 2.0, 1.0, 0.0], bad[::-1], bad_above=bad_above) == expected


def test_no_majority_no_flag_and_the_parameter_is_found_by_name() -> None:
    space = {"learning_rate": LogUniform(1e-4, 10.0)}
    half = [
        outcome(10 ** (-4 + i / 4), state="diverged" if i % 3 == 0 else "completed")
        for i in range(20)
    ]
    assert learning_rate_flags(space, half) == []
    assert learning_rate_param({"lr": LogUniform(1e-3, 1.0)}, None) == "lr"
    assert learning_rate_param({"step": LogUniform(1e-3, 1.0)}, "step") == "step"
    assert learning_rate_param({"x": Uniform(0.0, 1.0)}, None) is None


# -- a stage in which every trial diverged --------------------------------------------


def test_a_stage_where_every_trial_diverged_moves_a_whole_width_away() -> None:
    space = {"learning_rate": LogUniform(1.0, 1e3), "reg": LogUniform(1e-6, 1e-2)}
    rng = np.random.default_rng(0)
    lrs = 10 ** rng.uniform(0, 3, size=30)
    trials = [
        TrialOutcome({"learning_rate": lr, "reg": 1e-4}, None, "diverged", frozenset({"diverged"}))
        for lr in lrs
    ]
    evidence = learning_rate_flags(space, trials)
    assert [(f.edge, f.walk) for f in evidence] == [("lower", True)]
    new, flags, decisions = narrow_space(space, [], evidence_flags=evidence)
    low, high = decades(new["learning_rate"])
    assert high <= math.log10(min(lrs)) + 1e-9  # away from every divergence
    assert low <= 0.0 - 3.0 + 1e-9  # by the whole old width (3 decades)
    assert flags[0].walk
    assert "moved a whole width below" in decisions[0].why
    assert new["reg"] == space["reg"]
    assert decisions[1].why == "no scored trial: range kept"


def test_most_diverged_in_a_wide_range_caps_the_top_without_a_nonsense_walk() -> None:
    """TPE blind to divergence put 21-31 of 50 trials above lr 1; the false flag then
    moved the range to [3e-10, 0.56]: the cap must stay near the data."""
    space = {"learning_rate": LogUniform(1e-4, 10.0)}
    lrs = [10 ** (-4 + 5 * i / 49) for i in range(50)]
    trials = []
    for lr in lrs:
        if lr > 0.8:
            trials.append(outcome(lr, state="diverged", score=None, codes={"diverged"}))
        else:  # scores peak near lr 0.1
            trials.append(outcome(lr, score=1 - 0.2 * abs(math.log10(lr) + 1)))
    trials += [outcome(5.0, state="diverged", score=None, codes={"diverged"})] * 40
    evidence = learning_rate_flags(space, trials)
    assert [(f.edge, f.walk) for f in evidence] == [("lower", False)]
    assert 0.8 <= evidence[0].value <= 1.0
    usable = sorted((o for o in trials if o.usable), key=lambda o: -(o.score or 0))[:10]
    new, _, _ = narrow_space(space, [o.params for o in usable], evidence_flags=evidence)
    low, high = decades(new["learning_rate"])
    assert low >= -4.0  # not extended downward
    assert high <= math.log10(evidence[0].value) + 1e-9  # capped at the divergence


def test_every_trial_too_low_walks_up_a_whole_width() -> None:
    space = {"learning_rate": LogUniform(1e-6, 1e-3)}
    trials = [outcome(10 ** (-6 + 3 * i / 29), score=0.1, codes={"lr_too_low"}) for i in range(30)]
    (flag,) = learning_rate_flags(space, trials)
    assert (flag.edge, flag.walk) == ("upper", True)
    new, _, _ = narrow_space(space, [t.params for t in trials[:6]], evidence_flags=[flag])
    low, high = decades(new["learning_rate"])
    assert high >= -3.0 + 3.0 - 1e-9
    assert low >= math.log10(flag.value) - 1e-9


# -- border walks ---------------------------------------------------------------------


def scored_rising(n: int = 30) -> list[tuple[dict[str, float], float]]:
    """Scores that rise toward the upper edge of [1e-6, 1e-3] (the good region above)."""
    lrs = [10 ** (-6 + 3 * i / (n - 1)) for i in range(n)]
    return [({"learning_rate": lr}, 0.1 + 0.25 * (math.log10(lr) + 6)) for lr in lrs]


def test_scores_rising_toward_a_border_turn_its_flag_into_a_walk_of_a_whole_width() -> None:
    space = {"learning_rate": LogUniform(1e-6, 1e-3)}
    scored = scored_rising()
    trends = score_trends(space, scored, objective=MAX)
    assert trends["learning_rate"].z >= TREND_Z
    top = [p for p, _ in sorted(scored, key=lambda ps: -ps[1])[:6]]
    new, flags, decisions = narrow_space(space, top, trends=trends)
    assert [(f.edge, f.walk) for f in flags] == [("upper", True)]
    assert flags[0].message.endswith("and the scores rise toward it (rho +1.00, 30 trials)")
    _, high = decades(new["learning_rate"])
    assert high >= -3.0 + 3.0 - 1e-9  # the whole old width, 3 decades, above
    assert "moved a whole width above" in decisions[0].why
    # without a trend the same border is a plain extension by `extend` (half a width)
    new, flags, _ = narrow_space(space, top)
    assert [(f.edge, f.walk) for f in flags] == [("upper", False)]
    assert decades(new["learning_rate"])[1] == pytest.approx(-3.0 + 1.5)


def test_noise_is_seldom_a_trend_and_a_minimised_metric_flips_the_sign() -> None:
    space = {"learning_rate": LogUniform(1e-6, 1e-3), "reg": LogUniform(1e-6, 1.0)}
    rng = np.random.default_rng(1)
    walks = 0
    for _ in range(400):  # scores that ignore reg: a walk by chance in about 1 % of stages
        scored = [({"reg": 10 ** rng.uniform(-6, 0)}, s) for s in rng.uniform(0, 1, size=40)]
        walks += abs(score_trends(space, scored, objective=MAX)["reg"].z) >= TREND_Z
    assert walks <= 12  # 2 x 400 x 1 %: one-sided in each direction
    rising = scored_rising()
    losses = [(p, -s) for p, s in rising]
    assert score_trends(space, losses, objective=MIN)["learning_rate"].z >= TREND_Z
    few = score_trends(space, rising[:4], objective=MAX)["learning_rate"]
    assert (few.z, few.n, few.tested) == (0.0, 4, False)


def test_most_diverged_and_the_best_of_the_rest_at_the_bottom_walk_down() -> None:
    """Most trials diverged, and the best of the rest sits in the bottom quarter of what
    lies below the divergence: the range is wrong and the scores agree, so it moves a
    whole width down."""
    space = {"learning_rate": LogUniform(1e-1, 1e2)}
    trials = [outcome(0.11, score=0.9), outcome(0.13, score=0.8)]
    trials += [outcome(10 ** (0.5 + i / 15), state="diverged", score=None) for i in range(20)]
    evidence = learning_rate_flags(space, trials)
    assert [(f.edge, f.walk) for f in evidence] == [("lower", True)]
    new, flags, _ = narrow_space(
        space, [{"learning_rate": 0.11}, {"learning_rate": 0.13}], evidence_flags=evidence
    )
    assert [(f.edge, f.walk, f.evidence is not None) for f in flags] == [("lower", True, True)]
    low, high = decades(new["learning_rate"])
    assert low <= -1.0 - 3.0 + 1e-9
    assert high <= math.log10(evidence[0].value) + 1e-9


def test_weak_evidence_walks_only_when_the_best_sits_on_its_border() -> None:
    """Ratio warnings on trials that scored never walk by themselves; the best value on
    the border they point to does."""
    space = {"learning_rate": LogUniform(1.0, 1e3)}
    trials = [
        outcome(10 ** (i / 7), score=0.5 + 0.01 * i, codes={"lr_too_high"}) for i in range(20)
    ]
    trials += [outcome(1.05, score=0.99), outcome(1.2, score=0.3)]
    (flag,) = learning_rate_flags(space, trials)
    assert (flag.edge, flag.walk) == ("lower", False)
    top = [{"learning_rate": 1.05}, {"learning_rate": 10 ** (19 / 7)}, {"learning_rate": 1e2}]
    _, flags, _ = narrow_space(space, top, evidence_flags=[flag])
    assert flags[0].walk  # best 1.05 on the lower border of [1, 1000]


# -- limits ---------------------------------------------------------------------------


def test_hard_limits_come_from_the_spec_then_the_defaults_and_never_cut_the_range() -> None:
    hidden = IntLogUniform(16, 512)
    assert hard_limits("hidden", hidden, BUILTIN_LIMITS) == (1.0, 4096.0)
    assert hard_limits("hidden", IntLogUniform(16, 512, (8, 1024)), BUILTIN_LIMITS) == (8, 1024)
    assert hard_limits("hidden", IntLogUniform(16, 8192), BUILTIN_LIMITS) == (1.0, 8192)
    assert hard_limits("hidden", hidden, {}) == (1.0, math.inf)
    assert hard_limits("dropout", Uniform(0.0, 0.5), BUILTIN_LIMITS) == (0.0, 0.95)


def test_a_walk_blocked_by_a_limit_is_no_walk() -> None:
    space = {"hidden": IntLogUniform(512, 4096)}
    scored = [({"hidden": h}, h / 4096) for h in (512, 800, 1200, 2000, 3000, 4000, 4096)]
    trends = score_trends(space, scored, objective=MAX)
    policy = NarrowingPolicy(limits=BUILTIN_LIMITS)
    assert border_flags(space, {"hidden": 4096}, policy, trends=trends) == []  # at its limit
    space = {"hidden": IntLogUniform(512, 4000)}
    new, flags, _ = narrow_space(space, [{"hidden": 4000}], policy, trends=trends)
    assert new["hidden"].high == 4096  # type: ignore[attr-defined]
    assert flags[0].walk  # it moved, if only to the limit
    # every trial diverged, but the range already starts at its limit: no walk
    lr = {"learning_rate": LogUniform(1e-8, 1e-5)}
    trials = [outcome(10 ** (-8 + i / 3), state="diverged", score=None) for i in range(10)]
    evidence = learning_rate_flags(lr, trials)
    assert evidence[0].walk
    new, flags, decisions = narrow_space(lr, [], policy, evidence_flags=evidence)
    assert not flags[0].walk
    assert new["learning_rate"].low == 1e-8  # type: ignore[attr-defined]
    assert decisions[0].why.endswith("(not extended: the lower edge is at its limit)")
    assert flags[0].held == "the lower edge is at its limit"
    new, flags, _ = narrow_space(
        {"hidden": IntLogUniform(512, 4096, (8, 4096))}, [{"hidden": 4096}], trends=trends
    )
    assert flags == []


@pytest.mark.parametrize("seed", range(6))
def test_no_extension_ever_crosses_a_limit(seed: int) -> None:
    """Twenty stages of walks and extensions in random directions stay inside the
    limits: explicit ones, and the built-in defaults (hidden never passes 4096)."""
    rng = np.random.default_rng(seed)
    space: dict[str, Distribution] = {
        "hidden": IntLogUniform(16, 512),
        "learning_rate": LogUniform(1e-4, 1.0, (1e-6, 10.0)),
        "dropout": Uniform(0.0, 0.5),
        "reg": LogUniform(1e-6, 1e-2),
    }
    policy = NarrowingPolicy(limits=BUILTIN_LIMITS, walk=float(rng.uniform(1, 3)))
    for _ in range(20):
        edge = {name: rng.choice(["low", "high", "mid"]) for name in space}
        best = {}
        for name, d in space.items():
            assert isinstance(d, NumericDistribution)
            best[name] = {"low": d.low, "high": d.high}.get(str(edge[name]), (d.low + d.high) / 2)
            if d.integer:
                best[name] = round(best[name])
        trends = {name: float(rng.choice([-3.0, 0.0, 3.0])) for name in space}
        space, _, _ = narrow_space(space, [best], policy, trends=trends)
        hidden, lr, dropout, reg = (
            space[k] for k in ("hidden", "learning_rate", "dropout", "reg")
        )
        assert 1 <= hidden.low <= hidden.high <= 4096  # type: ignore[attr-defined]
        assert 1e-6 <= lr.low <= lr.high <= 10.0  # type: ignore[attr-defined]
        assert 0.0 <= dropout.low <= dropout.high <= 0.95  # type: ignore[attr-defined]
        assert 1e-10 <= reg.low <= reg.high <= 1e2  # type: ignore[attr-defined]


def test_the_issues_runaway_hidden_size_stops_at_4096() -> None:
    """[16, 512] grew to [337, 38982] with no ceiling."""
    space: dict[str, Distribution] = {"hidden": IntLogUniform(16, 512)}
    policy = NarrowingPolicy(limits=BUILTIN_LIMITS)
    for _ in range(8):
        d = space["hidden"]
        assert isinstance(d, NumericDistribution)
        space, _, _ = narrow_space(space, [{"hidden": d.high}], policy, trends={"hidden": 5.0})
    assert space["hidden"].high == 4096  # type: ignore[attr-defined]


def test_flags_serialize_their_walk() -> None:
    flag = BorderFlag("learning_rate", 1e-3, "upper", 1e-6, 1e-3, walk=True)
    assert flag.to_json()["walk"] is True
    assert flag.to_json()["message"] == (
        "best learning_rate 0.001 is on the upper border of [1e-06, 0.001], and the scores "
        "rise toward it"
    )


def test_most_too_low_leaves_the_region_and_walks_when_the_rest_points_up() -> None:
    """Most trials do not learn. The next range leaves the too-low region and, as every
    "too low" does, moves its upper edge: by `extend` while the best of the rest sits
    inside (an optimum inside the range: no walk, no stage added), by a whole width when
    it sits on the top border (or the rest is a sliver)."""
    space = {"learning_rate": LogUniform(1e-6, 1e-3)}
    lrs = [10 ** (-6 + 3 * i / 29) for i in range(30)]
    low_trials = [outcome(lr, score=0.1, codes={"lr_too_low"}) for lr in lrs[:12]]
    low_trials += [outcome(lr, score=0.1, codes={"not_learning"}) for lr in lrs[12:20]]
    interior = [0.12, 0.3, 0.11, 0.14, 0.1, 0.13, 0.12, 0.1, 0.11, 0.1]
    trials = low_trials + [outcome(lr, score=s) for lr, s in zip(lrs[20:], interior, strict=True)]
    (flag,) = learning_rate_flags(space, trials)
    assert (flag.edge, flag.walk) == ("upper", False)
    assert flag.evidence == (
        "20 of 30 trials are too low (12 with an update:weight ratio far below 1e-3, 8 not "
        "learning) (up to 0.000104)"
    )
    top = [{"learning_rate": lrs[21]}, {"learning_rate": lrs[23]}, {"learning_rate": lrs[22]}]
    new, flags, decisions = narrow_space(space, top, evidence_flags=[flag])
    low, high = decades(new["learning_rate"])
    assert not flags[0].walk
    assert high == pytest.approx(-3.0 + 1.5)  # extended by half the width, not walked
    assert low >= math.log10(flag.value) - 1e-9  # out of the too-low region
    assert decisions[0].why == "too low up to 0.000104: raised past it and extended above"
    # the best of the rest on the top border: a walk of a whole width
    on_top = [*interior[:-1], 0.5]
    trials = low_trials + [outcome(lr, score=s) for lr, s in zip(lrs[20:], on_top, strict=True)]
    (flag,) = learning_rate_flags(space, trials)
    assert flag.walk
    new, flags, decisions = narrow_space(
        space, [{"learning_rate": lrs[29]}], evidence_flags=[flag]
    )
    assert decades(new["learning_rate"])[1] >= 0.0 - 1e-9
    assert "moved a whole width above" in decisions[0].why


def test_ratio_warnings_on_trials_that_scored_well_flag_but_never_cut_them_off() -> None:
    """Plain SGD on digits scores 0.98 at learning rates of 4 to 8 with update:weight
    ratios above 1e-1: the warning flags, but the top trials keep their region and the
    range does not walk away from the best scores."""
    space = {"learning_rate": LogUniform(4.0, 8.0)}
    lrs = [4.0 * 2 ** (i / 9) for i in range(10)]
    trials = [
        outcome(lr, score=0.97 + 0.001 * i, codes={"lr_too_high"}) for i, lr in enumerate(lrs)
    ]
    (flag,) = learning_rate_flags(space, trials)
    assert (flag.edge, flag.walk) == ("lower", False)
    top = [{"learning_rate": lr} for lr in lrs[::-1][:3]]  # the best at the top
    new, flags, decisions = narrow_space(space, top, evidence_flags=[flag])
    assert new["learning_rate"].high >= lrs[-1] * (1 - 1e-9)  # type: ignore[attr-defined]
    assert not flags[0].walk
    assert decisions[0].why.startswith("too high from")


def test_a_too_high_flag_names_each_cause_once_per_trial() -> None:
    space = {"learning_rate": LogUniform(1.0, 100.0)}
    trials = [
        outcome(50.0, state="diverged", score=None, codes={"diverged", "lr_too_high"}),
        outcome(40.0, codes={"dead_units", "lr_too_high"}),
        outcome(30.0, codes={"lr_too_high"}),
        outcome(1.5),
    ]
    (flag,) = learning_rate_flags(space, trials)
    assert flag.evidence == (
        "3 of 4 trials are too high (1 diverged, 1 with dead units, 1 with an update:weight "
        "ratio far above 1e-3) (from 6.71 up)"
    )


def test_most_diverged_above_an_interior_best_caps_without_walking_down() -> None:
    """A walk upward overshot into divergence ([0.09, 100], 9 of 12 too high): the best,
    0.5, sits high in what lies below the divergence, so the range is capped there and
    does not walk three decades down again (an oscillation that spent extra stages)."""
    space = {"learning_rate": LogUniform(0.09, 100.0)}
    trials = [outcome(lr, score=s) for lr, s in ((0.12, 0.9), (0.3, 0.95), (0.5, 0.97))]
    trials += [outcome(lr, state="diverged", score=None) for lr in (1.5, 3, 6, 12, 30, 60)]
    trials += [outcome(lr, codes={"dead_units"}, score=0.1) for lr in (2.0, 8.0, 20.0)]
    (flag,) = learning_rate_flags(space, trials)
    assert (flag.edge, flag.walk) == ("lower", False)
    top = [{"learning_rate": 0.5}, {"learning_rate": 0.3}, {"learning_rate": 0.12}]
    new, flags, _ = narrow_space(space, top, evidence_flags=[flag])
    assert not flags[0].walk
    low, high = decades(new["learning_rate"])
    assert low >= math.log10(0.09) - 1e-9
    assert high <= math.log10(flag.value) + 1e-9
