"""Coarse-to-fine narrowing and border flags, as pure functions (the seed's
"Stage your search from coarse to fine" and "Careful with best values on border").

Everything works in each distribution's sampling scale (log10 for log ranges). After a
stage the next range spans the top trials' values plus a margin; a best value near an
edge is flagged and the next range extends beyond that edge instead of narrowing. When
the scores rise toward that edge, or divergence and babysitting say the range is wrong
(master/evidence.py), the flag *walks*: the range moves by at least its whole width, and
the stage controller may add stages until the best value is interior. No
range ever crosses its hard limits (the spec's `limits:`, or common/limits.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from gridless.common.errors import SpecError
from gridless.common.limits import default_limits
from gridless.common.space import (
    Choice,
    Distribution,
    NumericDistribution,
    parse_space,
    prune_conditions,
)
from gridless.common.spec import NarrowingSpec

__all__ = [
    "MIN_TREND_TRIALS",
    "REVERSAL_Z",
    "SUPPORT_Z",
    "TREND_Z",
    "BorderFlag",
    "Decision",
    "EdgeMove",
    "NarrowingPolicy",
    "RaisedFlag",
    "Trend",
    "border_decision",
    "border_flags",
    "conditional_values",
    "hard_limits",
    "narrow_space",
]

# A one-sided 1 % test of Spearman's rank correlation between a parameter (in its
# sampling scale) and the score (master/evidence.py computes it, with scipy's p-value
# turned into a normal score): z >= 2.326 says the scores rise toward the upper border,
# z <= -2.326 toward the lower one. Noise passes it in about 1 % of the stages.
TREND_Z = 2.326
# A weaker trend (one-sided 5 %): what a best value on a border needs before the range
# is extended past it. Without it, the best of a parameter that does not matter lands on
# a border in a fifth of the stages and each of them pushed the range further; with a
# one-sided 20 % lean, 11 of 120 stage decisions on a pure-noise objective still
# extended a range (/tmp-style simulation in tests/master/test_border_decision.py).
SUPPORT_Z = 1.645
# Within the half of the trials nearest an edge, a decline toward it (one-sided 5 %)
# says the optimum is inside: a bowl near the edge, not a slope past it; even "too low"
# does not move that edge then. A move by the scores alone asks more: the scores must
# not fall at all within that half (digits' SGD at one epoch over [1e-4, 10]: rho +0.44
# over 30 trials overall, its best at 0.15, falling above; the edge must stay).
REVERSAL_Z = 1.645
# A trend walks (whole widths) only when the best value sits in the outer quarter on the
# side it rises toward; further in, the range is extended by `extend` instead.
WALK_POSITION = 0.75
# Below this many scored trials no trend is tested (a rank correlation of four points is
# noise), and a best value on a border extends the range as the seed says.
MIN_TREND_TRIALS = 5


@dataclass(frozen=True)
class Trend:
    """How the scores of a stage move with one parameter (`evidence.score_trends`).

    `z` is Spearman's rho as a one-sided normal score (positive: the scores improve as
    the value grows); `upper_z` and `lower_z` the same within the upper and the lower
    half of the trials by value (0 when too few); `n` the trials it counts.
    """

    z: float = 0.0
    rho: float = 0.0
    n: int = 0
    upper_z: float = 0.0
    lower_z: float = 0.0

    @classmethod
    def of(cls, raw: float | Trend) -> Trend:
        """A trend, or a bare z score (as many trials as it takes to test it)."""
        if isinstance(raw, Trend):
            return raw
        return cls(z=float(raw), rho=0.0, n=MIN_TREND_TRIALS)

    @property
    def tested(self) -> bool:
        return self.n >= MIN_TREND_TRIALS

    def describe(self) -> str:
        return f"Spearman rho {self.rho:+.2f} over {self.n} trials"


@dataclass(frozen=True)
class EdgeMove:
    """What `border_decision` decides for one edge of a range: `walk` (whole widths),
    `extend` (by `NarrowingPolicy.extend`), or `hold` (leave that edge where the
    narrowing puts it), and why."""

    edge: str  # "lower" | "upper"
    move: str  # "walk" | "extend" | "hold"
    reason: str


def border_decision(
    position: float | None,
    trend: Trend,
    *,
    border: float,
    lower_open: bool = True,
    upper_open: bool = True,
    evidence: str | None = None,
    evidence_walks: bool = False,
) -> EdgeMove | None:
    """The border decision of one numeric parameter, from the scores (pure).

    Args:
        position: the best value's place in the range, 0 (lower edge) to 1 (upper), in
            the sampling scale; None when nothing scored.
        trend: how the scores move with the parameter.
        border: a best value within this fraction of an edge is on that border.
        lower_open, upper_open: the edge is not at its hard limit yet.
        evidence: "too_low" (divergence and babysitting say the values are too low:
            the upper edge must move) or "too_high" (the lower edge may move), or None.
        evidence_walks: the evidence is strong enough to walk by itself.

    Returns:
        The edge to move and how, or None when neither edge has a reason to move.
        Rules: the scores are never contradicted: a significant trend (`TREND_Z`) toward
        one edge forbids moving the other outward, whatever the evidence; "too low"
        always moves the upper edge unless such a trend, or a decline within the upper
        half (`REVERSAL_Z`), says the scores fall toward it, or it sits at its limit; a
        significant trend walks toward its edge (best in the outer quarter) or extends
        it; a best value on a border extends it only with the scores leaning that way
        (`SUPPORT_Z`), or with too few trials to test a trend at all (`MIN_TREND_TRIALS`).
    """
    up = trend.tested and trend.z >= TREND_Z
    down = trend.tested and trend.z <= -TREND_Z
    falls_up = trend.upper_z <= -REVERSAL_Z  # declines toward the upper edge
    falls_down = trend.lower_z >= REVERSAL_Z  # declines toward the lower edge
    on_upper = position is not None and position >= 1.0 - border - _EPS
    on_lower = position is not None and position <= border + _EPS
    if evidence == "too_low":
        if not upper_open:
            return EdgeMove("upper", "hold", "the upper edge is at its limit")
        # strong evidence (most trials failed outright) yields only to a significant
        # trend over the whole stage, weak evidence also to a decline in the upper half
        if down or (falls_up and not evidence_walks):
            where = "" if down else " within the upper half"
            falls = f"the scores fall toward the upper edge{where} ({trend.describe()})"
            return EdgeMove("upper", "hold", falls)
        walks = evidence_walks or up or on_upper
        return EdgeMove("upper", "walk" if walks else "extend", "the values are too low")
    if evidence == "too_high":
        walks = evidence_walks or on_lower
        if walks and not lower_open:
            return EdgeMove("lower", "hold", "the lower edge is at its limit")
        if walks and up:
            return EdgeMove(
                "lower",
                "hold",
                f"the scores rise toward the upper edge ({trend.describe()}): no walk down",
            )
        return EdgeMove("lower", "walk" if walks else "hold", "the values are too high")
    rises = f"the scores rise toward it ({trend.describe()})"
    # a move by the scores needs them still rising in the half nearest that edge (or too
    # few trials there to tell): a bowl whose bottom is inside also correlates overall
    falls_up = falls_up or trend.upper_z < 0
    falls_down = falls_down or trend.lower_z > 0
    if up and upper_open and not falls_up:
        walks = position is not None and position >= WALK_POSITION
        return EdgeMove("upper", "walk" if walks else "extend", rises)
    if down and lower_open and not falls_down:
        walks = position is not None and position <= 1.0 - WALK_POSITION
        return EdgeMove("lower", "walk" if walks else "extend", rises)
    for edge, on, opened, lean, reverses in (
        ("upper", on_upper, upper_open, trend.z >= SUPPORT_Z, falls_up),
        ("lower", on_lower, lower_open, trend.z <= -SUPPORT_Z, falls_down),
    ):
        if not (on and opened):
            continue
        if not trend.tested:
            untested = (
                f"too few scored trials ({trend.n}) to test a trend"
                if trend.n
                else "no trend tested"
            )
            return EdgeMove(edge, "extend", untested)
        if lean and not reverses and not (up or down):
            return EdgeMove(edge, "extend", f"the scores lean toward it ({trend.describe()})")
        why = "do not rise within its half" if reverses else "show no trend toward it"
        if (trend.z <= -TREND_Z and edge == "upper") or (trend.z >= TREND_Z and edge == "lower"):
            why = "fall toward it"
        return EdgeMove(
            edge,
            "hold",
            f"best on the {edge} border, but the scores {why} ({trend.describe()}): not extended",
        )
    return None


# The spec's defaults are the only ones: a policy built in code or from a
# stored spec that predates a key gets the same values as a spec that leaves it out.
_DEFAULTS: dict[str, Any] = NarrowingSpec().model_dump()


@dataclass(frozen=True)
class NarrowingPolicy:
    """Knobs of the controller.

    Args:
        top_fraction: share of the stage's scored trials that shape the next range.
        min_top: at least this many top trials (when available).
        margin: added on each side, as a fraction of the top values' span in scale.
        min_width: the new range is at least this fraction of the old width (in scale).
        border: a best value within this fraction of the width from an edge is flagged.
        extend: a flagged edge moves outward by this fraction of the old width (0.5: a
            range of 3 decades flagged at its top gains 1.5 decades above it).
        walk: a flag the scores or the evidence back moves its edge by this many old
            widths (at least 1: a range of 3 decades walks 3 decades or more).
        max_extra_stages: stages the study may add while a walk has not arrived (a best
            value still on a border the scores back, or no trial scored).
        lr_param: the parameter divergence and the update:weight ratio speak about
            (default: `learning_rate`, else `lr`).
        limits: default hard limits by parameter name (common/limits.py), for ranges
            without their own `limits:`.
        ranges: the ranges the user wrote, by parameter name: a range that moves past
            one is announced in its flag (`beyond_range`).
        extra_epochs: epochs beyond the plan (its stages' trials x epochs) that added
            stages may spend (master/stages.py).
    """

    top_fraction: float = _DEFAULTS["top_fraction"]
    min_top: int = _DEFAULTS["min_top"]
    margin: float = _DEFAULTS["margin"]
    min_width: float = _DEFAULTS["min_width"]
    border: float = _DEFAULTS["border"]
    extend: float = _DEFAULTS["extend"]
    walk: float = _DEFAULTS["walk"]
    max_extra_stages: int = _DEFAULTS["max_extra_stages"]
    extra_epochs: int = _DEFAULTS["extra_epochs"]
    lr_param: str | None = None
    limits: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)

    @classmethod
    def from_spec(
        cls,
        raw: Mapping[str, Any] | None,
        *,
        limits: Mapping[str, tuple[float, float]] | None = None,
        ranges: Mapping[str, tuple[float, float]] | None = None,
    ) -> NarrowingPolicy:
        """The policy of a study (its spec's `narrowing:` block), defaults elsewhere."""
        return cls(**dict(raw or {}), limits=dict(limits or {}), ranges=dict(ranges or {}))

    @classmethod
    def for_study(cls, spec: Mapping[str, Any]) -> NarrowingPolicy:
        """The policy of a stored study spec, with the default limits of its ranges and
        the ranges the user wrote."""
        try:
            written = parse_space(spec.get("space") or {})
        except SpecError:  # a stored spec is valid; a partial one (in a test) has none
            written = {}
        ranges = {
            name: (float(d.low), float(d.high))
            for name, d in written.items()
            if isinstance(d, NumericDistribution)
        }
        return cls.from_spec(spec.get("narrowing"), limits=default_limits(spec), ranges=ranges)


@dataclass(frozen=True)
class BorderFlag:
    """A best value near an edge of its range, scores that rise toward an edge, or
    evidence that the range is wrong.

    `walk` is set when the range moved by whole widths (the study may add a stage);
    `held` says why an edge the evidence points to did not move; `note` what the next
    range did beyond the flag (stopped at a limit, past the user's own range), and
    `beyond_range` whether it lies past the range the user wrote.
    """

    param: str
    value: float
    edge: str  # "lower" | "upper"
    low: float
    high: float
    evidence: str | None = None  # set when divergence or babysitting raised it
    walk: bool = False
    rho: float | None = None  # Spearman's rho of the scores, when a trend raised it
    trials: int = 0  # the trials that rho counts
    on_border: bool = True  # the best value sits on the border (not only the trend)
    held: str | None = None
    note: str | None = None
    beyond_range: bool = False

    @property
    def message(self) -> str:
        where = f"[{self.low:.3g}, {self.high:.3g}]"
        if self.evidence is not None:
            side = "low" if self.edge == "upper" else "high"
            text = f"{self.param} range {where} is too {side}: {self.evidence}"
        elif self.on_border:
            text = f"best {self.param} {self.value:.3g} is on the {self.edge} border of {where}"
            if self.rho is not None:
                how = "rise" if self.walk else "lean"
                stat = f"rho {self.rho:+.2f}, {self.trials} trials"
                text += f", and the scores {how} toward it ({stat})"
            elif self.walk:  # stored before flags carried their rho
                text += ", and the scores rise toward it"
        else:
            text = (
                f"the scores rise toward the {self.edge} border of {self.param} {where} "
                f"(rho {self.rho or 0.0:+.2f}, {self.trials} trials; best {self.value:.3g})"
            )
        if self.held is not None:
            text += f"; not moved: {self.held}"
        if self.note is not None:
            text += f"; {self.note}"
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "param": self.param,
            "value": self.value,
            "edge": self.edge,
            "low": self.low,
            "high": self.high,
            "evidence": self.evidence,
            "walk": self.walk,
            "rho": self.rho,
            "trials": self.trials,
            "on_border": self.on_border,
            "held": self.held,
            "note": self.note,
            "beyond_range": self.beyond_range,
            "message": self.message,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> BorderFlag:
        """A flag as `to_json` stored it in a stage's decisions (an older one lacks the
        later keys: their defaults)."""
        rho = raw.get("rho")
        return cls(
            param=str(raw["param"]),
            value=float(raw["value"]),
            edge=str(raw["edge"]),
            low=float(raw["low"]),
            high=float(raw["high"]),
            evidence=raw.get("evidence"),
            walk=bool(raw.get("walk", False)),
            rho=None if rho is None else float(rho),
            trials=int(raw.get("trials", 0)),
            on_border=bool(raw.get("on_border", True)),
            held=raw.get("held"),
            note=raw.get("note"),
            beyond_range=bool(raw.get("beyond_range", False)),
        )


@dataclass(frozen=True)
class RaisedFlag:
    """A stored flag with the stage after which it was raised (1-based) and whether that
    was the last stage (a flag no later stage answered)."""

    flag: BorderFlag
    stage: int
    final: bool

    def to_json(self) -> dict[str, Any]:
        return {**self.flag.to_json(), "stage": self.stage, "final": self.final}


@dataclass(frozen=True)
class Decision:
    """How one parameter's range changed from one stage to the next, and why."""

    param: str
    old: dict[str, Any]
    new: dict[str, Any]
    why: str

    def to_json(self) -> dict[str, Any]:
        return {"param": self.param, "old": self.old, "new": self.new, "why": self.why}


# Positions are computed through log10; a value exactly on the border fraction must count.
_EPS = 1e-9


def _generic_limits(dist: NumericDistribution) -> tuple[float, float]:
    # A uniform range that started inside [0, 1] (dropout, momentum) stays below 1.
    if not dist.log and 0.0 <= dist.low and dist.high <= 1.0 and not dist.integer:
        return 0.0, 0.999
    if dist.integer:
        return 1.0, float("inf")
    return float("-inf"), float("inf")


def hard_limits(
    name: str, dist: NumericDistribution, defaults: Mapping[str, tuple[float, float]]
) -> tuple[float, float]:
    """The bounds no range of `name` crosses: the spec's `limits:`, else the default
    limit of its name (within the generic ones: a uniform range inside [0, 1] stays below
    1, integers stay >= 1); never inside the current range (a limit does not cut what
    the user asked for)."""
    if dist.limits is not None:
        return float(dist.limits[0]), float(dist.limits[1])
    lo, hi = _generic_limits(dist)
    if name in defaults:
        lo, hi = max(lo, float(defaults[name][0])), min(hi, float(defaults[name][1]))
    return min(lo, dist.low), max(hi, dist.high)


def _position(dist: NumericDistribution, value: float) -> float:
    lo, hi = dist.to_scale(dist.low), dist.to_scale(dist.high)
    return (dist.to_scale(min(max(float(value), dist.low), dist.high)) - lo) / (hi - lo)


def _open_edges(
    name: str, dist: NumericDistribution, policy: NarrowingPolicy
) -> tuple[bool, bool]:
    hard_lo, hard_hi = hard_limits(name, dist, policy.limits)
    return dist.low > hard_lo, dist.high < hard_hi


def _decide(
    name: str,
    dist: NumericDistribution,
    best: Mapping[str, Any] | None,
    trend: Trend,
    policy: NarrowingPolicy,
    evidence: BorderFlag | None,
) -> tuple[EdgeMove | None, BorderFlag | None]:
    """One parameter's border decision and the flag it raises (None: no flag)."""
    value = None if best is None or name not in best else float(best[name])
    position = None if value is None else _position(dist, value)
    lower_open, upper_open = _open_edges(name, dist, policy)
    kind = None
    if evidence is not None:
        kind = "too_low" if evidence.edge == "upper" else "too_high"
    move = border_decision(
        position,
        trend,
        border=policy.border,
        lower_open=lower_open,
        upper_open=upper_open,
        evidence=kind,
        evidence_walks=evidence.walk if evidence is not None else False,
    )
    if move is None:
        return None, evidence
    if evidence is not None:
        plain = ("the values are too high", "the values are too low")
        held = move.reason if move.move == "hold" and move.reason not in plain else None
        return move, replace(evidence, walk=move.move == "walk", held=held)
    if move.move == "hold" or value is None:
        return move, None
    on = position is not None and (
        position <= policy.border + _EPS
        if move.edge == "lower"
        else position >= 1.0 - policy.border - _EPS
    )
    flag = BorderFlag(
        name,
        value,
        move.edge,
        dist.low,
        dist.high,
        walk=move.move == "walk",
        rho=trend.rho if trend.tested else None,
        trials=trend.n,
        on_border=on,
    )
    return move, flag


def border_flags(
    space: Mapping[str, Distribution],
    best: Mapping[str, Any],
    policy: NarrowingPolicy = NarrowingPolicy(),
    *,
    trends: Mapping[str, float | Trend] | None = None,
) -> list[BorderFlag]:
    """The flags of the best values and the scores' trends (`border_decision` per
    numeric parameter): a best value on a border the scores lean toward, or scores that
    rise significantly toward an edge. A range with `low == high` has no interior and is
    never flagged, nor an edge at its hard limit. Without `trends` every best value on a
    border is flagged (nothing tests a trend)."""
    flags = []
    for name, dist in space.items():
        if not isinstance(dist, NumericDistribution) or dist.high <= dist.low:
            continue
        trend = Trend.of((trends or {}).get(name, Trend()))
        _, flag = _decide(name, dist, best, trend, policy, None)
        if flag is not None:
            flags.append(flag)
    return flags


def _scale_of(dist: NumericDistribution, value: float) -> float:
    """`to_scale` that maps 0 (and below) on a log scale, and infinities, to +-inf."""
    if math.isinf(value):
        return value
    if dist.log and value <= 0:
        return float("-inf")
    return dist.to_scale(value)


def _narrow_numeric(
    name: str,
    dist: NumericDistribution,
    values: Sequence[float],
    move: EdgeMove | None,
    flag: BorderFlag | None,
    policy: NarrowingPolicy,
) -> tuple[NumericDistribution, str, set[str], str | None]:
    """The next range of one parameter, why, the edges a walk moved ("lower", "upper"),
    and the note of its flag (a limit it stopped at, the user's range it left)."""
    lo, hi = dist.to_scale(dist.low), dist.to_scale(dist.high)
    width = hi - lo
    top_hi = lo
    if values:
        scaled = [dist.to_scale(min(max(float(v), dist.low), dist.high)) for v in values]
        top_lo, top_hi = min(scaled), max(scaled)
        pad = max(policy.margin * (top_hi - top_lo), 0.5 * policy.min_width * width)
        new_lo, new_hi = max(lo, top_lo - pad), min(hi, top_hi + pad)
        why = f"span of the top {len(values)} trials plus a margin"
    else:
        new_lo, new_hi = lo, hi
        why = "no scored trial: range kept"
    walk = max(policy.walk, 1.0) * width
    user = policy.ranges.get(name)
    if user is not None:
        # a range that shrank to a sliver (raised past a too-low region) still walks
        # half the width the user wrote, not a whole sliver's
        written = _scale_of(dist, user[1]) - _scale_of(dist, user[0])
        if math.isfinite(written):
            walk = max(walk, 0.5 * written)
    extend = policy.extend * width
    how = move.move if move is not None else "hold"
    outward: set[str] = set()  # edges a flag moves outward
    walking: set[str] = set()
    capped = False
    evidence = flag is not None and flag.evidence is not None
    if evidence and flag is not None:
        t = dist.to_scale(flag.value)
        if flag.edge == "lower":  # too high from t up: move below it
            capped = True
            # never below a top trial: a trial that scored well is no evidence
            # against its region, whatever its update:weight ratio
            t = max(t, top_hi) if values else t
            if how == "walk":
                new_lo, new_hi = lo - walk, t
                outward.add("lower")
                walking.add("lower")
                why = f"too high from {flag.value:.3g} up: moved {_widths(policy)} below"
            else:  # an interior best below the divergence: only leave the divergence
                new_hi = min(new_hi, t)
                why = f"too high from {flag.value:.3g} up: capped at {dist.from_scale(new_hi):.3g}"
        else:  # too low up to t: move above it
            if how == "walk":
                new_lo, new_hi = t, hi + walk
                outward.add("upper")
                walking.add("upper")
                why = f"too low up to {flag.value:.3g}: moved {_widths(policy)} above"
            elif how == "extend":
                new_lo, new_hi = max(new_lo, t), hi + extend
                outward.add("upper")
                why = f"too low up to {flag.value:.3g}: raised past it and extended above"
            else:  # held: only leave the region
                new_lo = max(new_lo, t)
                why = f"too low up to {flag.value:.3g}: raised past it"
        if move is not None and flag.held is not None:
            why += f" (not extended: {flag.held})"
    elif move is not None and how in ("walk", "extend"):
        step = walk if how == "walk" else extend
        side = "above" if move.edge == "upper" else "below"
        if move.edge == "upper":
            new_hi = hi + step
        else:
            new_lo = lo - step
        outward.add(move.edge)
        if how == "walk":
            walking.add(move.edge)
            why = f"{move.reason}: moved {_widths(policy)} {side}"
        elif flag is not None and flag.on_border:
            why = f"on the {move.edge} border, {move.reason}: extended {side} it"
        else:
            why = f"{move.reason}: extended {side} the {move.edge} border"
    elif move is not None:  # a best value on a border the scores do not back
        why += f"; {move.reason}"
    if new_hi < new_lo:  # an evidence bound crossed the top trials: keep a sliver
        span = 0.5 * policy.min_width * width
        new_lo, new_hi = (new_hi - span, new_hi) if capped else (new_lo, new_lo + span)
    hard_lo, hard_hi = hard_limits(name, dist, policy.limits)
    wanted_lo, wanted_hi = new_lo, new_hi
    new_lo = max(new_lo, _scale_of(dist, hard_lo))
    new_hi = min(new_hi, _scale_of(dist, hard_hi))
    low, high = dist.from_scale(new_lo), dist.from_scale(new_hi)
    # 10**log10(x) can land a hair outside the old bounds; only an edge a flag moves
    # outward may leave them
    if "lower" not in outward:
        low = max(low, dist.low)
    if "upper" not in outward:
        high = min(high, dist.high)
    low, high = max(low, hard_lo), min(high, hard_hi)
    if dist.log:
        low = max(low, dist.low * 1e-12)  # stays positive
    new = dist.with_bounds(low, max(low, high))
    assert isinstance(new, NumericDistribution)
    moved = {e for e in walking if (new.low < dist.low if e == "lower" else new.high > dist.high)}
    notes = []
    stopped = [
        f"{hard_lo:.3g}" if e == "lower" else f"{hard_hi:.3g}"
        for e in sorted(outward)
        if (wanted_lo < new_lo - _EPS if e == "lower" else wanted_hi > new_hi + _EPS)
    ]
    if stopped:
        notes.append(f"stopped at its limit {' and '.join(stopped)}")
        why += f" (stopped at its limits [{hard_lo:.3g}, {hard_hi:.3g}])"
    if user is not None and outward:
        past = ("lower" in outward and new.low < user[0]) or (
            "upper" in outward and new.high > user[1]
        )
        if past:
            notes.append(
                f"the next range [{new.low:.3g}, {new.high:.3g}] goes past your range "
                f"[{user[0]:.3g}, {user[1]:.3g}]"
            )
    return new, why, moved, "; ".join(notes) or None


def _widths(policy: NarrowingPolicy) -> str:
    n = max(policy.walk, 1.0)
    return "a whole width" if n == 1.0 else f"{n:g} widths"


def narrow_space(
    space: Mapping[str, Distribution],
    top_params: Sequence[Mapping[str, Any]],
    policy: NarrowingPolicy = NarrowingPolicy(),
    *,
    evidence_flags: Sequence[BorderFlag] = (),
    trends: Mapping[str, float | Trend] | None = None,
) -> tuple[dict[str, Distribution], list[BorderFlag], list[Decision]]:
    """The next stage's space from this stage's top trials (best first).

    Args:
        evidence_flags: flags raised from divergence and babysitting
            (`evidence.learning_rate_flags`); they take the place of a best-value flag
            on the same parameter, and `border_decision` decides how far they move it.
        trends: per parameter, how the scores move with it (`evidence.score_trends`);
            without them no trend is tested (a best value on a border extends).

    Returns:
        The new space, the flags (`walk` set only where a walk moved the range: one that
        a hard limit blocks is not; `note` says where a limit stopped it or it left the
        user's range), and one decision per parameter. With no scored trial and no
        evidence, the space is kept unchanged.
    """
    by_param = {f.param: f for f in evidence_flags}
    present = conditional_values(space, top_params, policy)
    best: dict[str, Any] | None = None
    if top_params:
        # a conditional parameter's best value is that of the best trial that has it
        best = {**top_params[0], **{n: v[0] for n, v in present.items() if v}}
        best = {n: v for n, v in best.items() if n not in present or present[n]}
    new_space: dict[str, Distribution] = {}
    decisions = []
    flags: list[BorderFlag] = []
    for name, dist in space.items():
        values = [p[name] for p in top_params if name in p]
        evidence = by_param.get(name)
        if name in present and not present[name] and evidence is None and top_params:
            new_space[name] = dist
            why = (
                f"only {len(values)} of the top trials have this parameter (fewer than "
                f"{policy.min_top}): range kept"
            )
        elif isinstance(dist, NumericDistribution) and (values or evidence is not None):
            move, flag = None, evidence
            if dist.high > dist.low:
                trend = Trend.of((trends or {}).get(name, Trend()))
                move, flag = _decide(name, dist, best, trend, policy, evidence)
            new, why, moved, note = _narrow_numeric(name, dist, values, move, flag, policy)
            new_space[name] = new
            if flag is not None:
                past = note is not None and "goes past your range" in note
                walked = flag.walk and flag.edge in moved
                flags.append(replace(flag, walk=walked, note=note, beyond_range=past))
        elif not top_params:
            new_space[name] = dist
            why = "no scored trial: range kept"
        elif not values:
            new_space[name] = dist
            why = "no top trial has this parameter: range kept"
        elif isinstance(dist, Choice):
            kept = tuple(o for o in dist.options if o in values)
            new_space[name] = replace(dist, options=kept)
            why = f"kept the options found among the top {len(values)} trials"
        else:  # pragma: no cover - every distribution is numeric or a choice
            new_space[name] = dist
            why = "range kept"
        decisions.append(Decision(name, dist.to_json(), new_space[name].to_json(), why))
    return prune_conditions(new_space), flags, decisions


def conditional_values(
    space: Mapping[str, Distribution],
    top_params: Sequence[Mapping[str, Any]],
    policy: NarrowingPolicy,
) -> dict[str, list[Any]]:
    """For each conditional parameter (`when:`), its values among the top trials that
    have it, best first; an empty list when fewer than `policy.min_top` have it, so that
    too few present trials keep its range and raise no border flag."""
    found = {}
    for name, dist in space.items():
        if dist.when:
            values = [p[name] for p in top_params if name in p]
            found[name] = values if len(values) >= policy.min_top else []
    return found
