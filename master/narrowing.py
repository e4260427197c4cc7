"""Coarse-to-fine narrowing and border flags, as pure functions (the seed's
"Stage your search from coarse to fine" and "Careful with best values on border").

Everything works in each distribution's sampling scale (log10 for log ranges). After a
stage the next range spans the top trials' values plus a margin; a best value near an
edge is flagged and the next range extends beyond that edge instead of narrowing. When
the scores rise toward that edge, or divergence and babysitting say the range is wrong
(master/evidence.py), the flag *walks*: the range moves by at least its whole width, and
the stage controller may add stages until the best value is interior (issue 20). No
range ever crosses its hard limits (the spec's `limits:`, or common/limits.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from gridless.common.limits import default_limits
from gridless.common.space import Choice, Distribution, NumericDistribution, prune_conditions
from gridless.common.spec import NarrowingSpec

__all__ = [
    "TREND_Z",
    "BorderFlag",
    "Decision",
    "NarrowingPolicy",
    "RaisedFlag",
    "border_flags",
    "conditional_values",
    "hard_limits",
    "narrow_space",
]

# A one-sided 1 % test: Spearman's rho has a standard deviation of 1/sqrt(n - 1) when
# the scores ignore a parameter, so rho * sqrt(n - 1) >= 2.326 says they rise toward a
# border (master/evidence.py computes it). Noise walks in about 1 % of the stages where
# its best value happens to sit on a border.
TREND_Z = 2.326


# The spec's defaults are the only ones (issue 21): a policy built in code or from a
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
    """

    top_fraction: float = _DEFAULTS["top_fraction"]
    min_top: int = _DEFAULTS["min_top"]
    margin: float = _DEFAULTS["margin"]
    min_width: float = _DEFAULTS["min_width"]
    border: float = _DEFAULTS["border"]
    extend: float = _DEFAULTS["extend"]
    walk: float = _DEFAULTS["walk"]
    max_extra_stages: int = _DEFAULTS["max_extra_stages"]
    lr_param: str | None = None
    limits: Mapping[str, tuple[float, float]] = field(default_factory=dict)

    @classmethod
    def from_spec(
        cls,
        raw: Mapping[str, Any] | None,
        *,
        limits: Mapping[str, tuple[float, float]] | None = None,
    ) -> NarrowingPolicy:
        """The policy of a study (its spec's `narrowing:` block), defaults elsewhere."""
        return cls(**dict(raw or {}), limits=dict(limits or {}))

    @classmethod
    def for_study(cls, spec: Mapping[str, Any]) -> NarrowingPolicy:
        """The policy of a stored study spec, with the default limits of its model."""
        return cls.from_spec(spec.get("narrowing"), limits=default_limits(spec))


@dataclass(frozen=True)
class BorderFlag:
    """A best value sitting near an edge of its range, or evidence that the range is wrong.

    `walk` is set when the scores (their trend toward the edge) or the evidence back the
    flag: the next range then moves by whole widths, and the study may add a stage.
    """

    param: str
    value: float
    edge: str  # "lower" | "upper"
    low: float
    high: float
    evidence: str | None = None  # set when divergence or babysitting raised it
    walk: bool = False

    @property
    def message(self) -> str:
        where = f"[{self.low:.3g}, {self.high:.3g}]"
        if self.evidence is not None:
            side = "low" if self.edge == "upper" else "high"
            return f"{self.param} range {where} is too {side}: {self.evidence}"
        text = f"best {self.param} {self.value:.3g} is on the {self.edge} border of {where}"
        return f"{text}, and the scores rise toward it" if self.walk else text

    def to_json(self) -> dict[str, Any]:
        return {
            "param": self.param,
            "value": self.value,
            "edge": self.edge,
            "low": self.low,
            "high": self.high,
            "evidence": self.evidence,
            "walk": self.walk,
            "message": self.message,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> BorderFlag:
        """A flag as `to_json` stored it in a stage's decisions (a flag stored before
        issue 20 has no `evidence` or `walk`)."""
        return cls(
            param=str(raw["param"]),
            value=float(raw["value"]),
            edge=str(raw["edge"]),
            low=float(raw["low"]),
            high=float(raw["high"]),
            evidence=raw.get("evidence"),
            walk=bool(raw.get("walk", False)),
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


def border_flags(
    space: Mapping[str, Distribution],
    best: Mapping[str, Any],
    policy: NarrowingPolicy = NarrowingPolicy(),
    *,
    trends: Mapping[str, float] | None = None,
) -> list[BorderFlag]:
    """Flag every numeric parameter whose best value lies within `policy.border` of an edge.

    A range with `low == high` has no interior and is never flagged, nor an edge at its
    hard limit. With `trends` (`evidence.score_trends`), a flag whose edge the scores rise
    toward walks.
    """
    flags = []
    for name, dist in space.items():
        if not isinstance(dist, NumericDistribution) or name not in best:
            continue
        lo, hi = dist.to_scale(dist.low), dist.to_scale(dist.high)
        if hi <= lo:
            continue
        value = min(max(float(best[name]), dist.low), dist.high)
        pos = (dist.to_scale(value) - lo) / (hi - lo)
        hard_lo, hard_hi = hard_limits(name, dist, policy.limits)
        trend = (trends or {}).get(name, 0.0)
        if pos <= policy.border + _EPS and dist.low > hard_lo:
            walk = trend <= -TREND_Z
            flags.append(
                BorderFlag(name, float(best[name]), "lower", dist.low, dist.high, walk=walk)
            )
        elif pos >= 1.0 - policy.border - _EPS and dist.high < hard_hi:
            walk = trend >= TREND_Z
            flags.append(
                BorderFlag(name, float(best[name]), "upper", dist.low, dist.high, walk=walk)
            )
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
    flags: Sequence[BorderFlag],
    policy: NarrowingPolicy,
) -> tuple[NumericDistribution, str, set[str]]:
    """The next range of one parameter, why, and the edges a walk moved ("lower",
    "upper")."""
    lo, hi = dist.to_scale(dist.low), dist.to_scale(dist.high)
    width = hi - lo
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
    outward: set[str] = set()  # edges a flag moves outward
    walking: set[str] = set()
    capped = False
    for flag in flags:
        if flag.evidence is not None:
            t = dist.to_scale(flag.value)
            if flag.edge == "lower":  # too high from t up: move below it
                capped = True
                # never below a top trial: a trial that scored well is no evidence
                # against its region, whatever its update:weight ratio
                t = max(t, top_hi) if values else t
                if flag.walk:
                    new_lo, new_hi = lo - walk, t
                    outward.add("lower")
                    walking.add("lower")
                    why = f"too high from {flag.value:.3g} up: moved {_widths(policy)} below"
                else:  # an interior best below the divergence: only leave the divergence
                    new_hi = min(new_hi, t)
                    why = (
                        f"too high from {flag.value:.3g} up: capped at "
                        f"{dist.from_scale(new_hi):.3g}"
                    )
            else:  # too low up to t: move above it
                if flag.walk:
                    new_lo, new_hi = t, hi + walk
                    outward.add("upper")
                    walking.add("upper")
                    why = f"too low up to {flag.value:.3g}: moved {_widths(policy)} above"
                else:  # an interior best above the region: only leave the region
                    new_lo = max(new_lo, t)
                    why = f"too low up to {flag.value:.3g}: raised past it"
        elif flag.edge == "lower":
            new_lo = lo - (walk if flag.walk else policy.extend * width)
            outward.add("lower")
            if flag.walk:
                walking.add("lower")
                why = (
                    f"on the lower border, scores rising toward it: moved {_widths(policy)} below"
                )
            else:
                why = "on the lower border: extended below it"
        else:
            new_hi = hi + (walk if flag.walk else policy.extend * width)
            outward.add("upper")
            if flag.walk:
                walking.add("upper")
                why = (
                    f"on the upper border, scores rising toward it: moved {_widths(policy)} above"
                )
            else:
                why = "on the upper border: extended above it"
    if new_hi < new_lo:  # an evidence bound crossed the top trials: keep a sliver
        span = 0.5 * policy.min_width * width
        new_lo, new_hi = (new_hi - span, new_hi) if capped else (new_lo, new_lo + span)
    hard_lo, hard_hi = hard_limits(name, dist, policy.limits)
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
    if walking - moved:
        why += f" (stopped at its limits [{hard_lo:.3g}, {hard_hi:.3g}])"
    return new, why, moved


def _widths(policy: NarrowingPolicy) -> str:
    n = max(policy.walk, 1.0)
    return "a whole width" if n == 1.0 else f"{n:g} widths"


def narrow_space(
    space: Mapping[str, Distribution],
    top_params: Sequence[Mapping[str, Any]],
    policy: NarrowingPolicy = NarrowingPolicy(),
    *,
    evidence_flags: Sequence[BorderFlag] = (),
    trends: Mapping[str, float] | None = None,
) -> tuple[dict[str, Distribution], list[BorderFlag], list[Decision]]:
    """The next stage's space from this stage's top trials (best first).

    Args:
        evidence_flags: flags raised from divergence and babysitting
            (`evidence.learning_rate_flags`, which decides whether they walk); they take
            the place of a best-value flag on the same parameter, and a best value on the
            border they point to makes them walk too.
        trends: per parameter, how the scores rise with it (`evidence.score_trends`): a
            best value on a border the scores rise toward walks.

    Returns:
        The new space, the flags (`walk` set only where a walk moved the range: one that
        a hard limit blocks is not), and one decision per parameter. With no scored trial
        and no evidence, the space is kept unchanged.
    """
    overridden = {f.param for f in evidence_flags}
    present = conditional_values(space, top_params, policy)
    if top_params:
        # a conditional parameter's best value is that of the best trial that has it
        first = {**top_params[0], **{n: v[0] for n, v in present.items() if v}}
        first = {n: v for n, v in first.items() if n not in present or present[n]}
        best = border_flags(space, first, policy, trends=trends)
    else:
        best = []
    evidence = []
    for flag in evidence_flags:
        # the best value on the border the evidence points to: the scores agree, it walks
        on_border = any(b.param == flag.param and b.edge == flag.edge for b in best)
        evidence.append(replace(flag, walk=True) if on_border and not flag.walk else flag)
    flags = [*evidence, *(f for f in best if f.param not in overridden)]
    by_param: dict[str, list[BorderFlag]] = {}
    for flag in flags:
        by_param.setdefault(flag.param, []).append(flag)
    new_space: dict[str, Distribution] = {}
    decisions = []
    walked: set[tuple[str, str]] = set()  # (param, edge) a walk moved
    for name, dist in space.items():
        values = [p[name] for p in top_params if name in p]
        mine = by_param.get(name, [])
        if name in present and not present[name] and not mine and top_params:
            new_space[name] = dist
            why = (
                f"only {len(values)} of the top trials have this parameter (fewer than "
                f"{policy.min_top}): range kept"
            )
        elif isinstance(dist, NumericDistribution) and (values or mine):
            new_space[name], why, moved = _narrow_numeric(name, dist, values, mine, policy)
            walked |= {(name, edge) for edge in moved}
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
    # an evidence flag's edge is the one it moves: too high ("lower") walks the lower
    # edge down, too low ("upper") the upper edge up
    flags = [replace(f, walk=f.walk and (f.param, f.edge) in walked) for f in flags]
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
