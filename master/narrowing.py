"""Coarse-to-fine narrowing and border flags, as pure functions (the seed's
"Stage your search from coarse to fine" and "Careful with best values on border").

Everything works in each distribution's sampling scale (log10 for log ranges). After a
stage the next range spans the top trials' values plus a margin; a best value near an
edge is flagged and the next range extends beyond that edge instead of narrowing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from common.space import Choice, Distribution, NumericDistribution

__all__ = [
    "BorderFlag",
    "Decision",
    "NarrowingPolicy",
    "border_flags",
    "narrow_space",
]


@dataclass(frozen=True)
class NarrowingPolicy:
    """Knobs of the controller.

    Args:
        top_fraction: share of the stage's scored trials that shape the next range.
        min_top: at least this many top trials (when available).
        margin: added on each side, as a fraction of the top values' span in scale.
        min_width: the new range is at least this fraction of the old width (in scale).
        border: a best value within this fraction of the width from an edge is flagged.
        extend: a flagged edge moves outward by this fraction of the old width (1.0: a
            range of 3 decades flagged at its top gains 3 more decades above it).
    """

    top_fraction: float = 0.2
    min_top: int = 3
    margin: float = 0.25
    min_width: float = 0.1
    border: float = 0.1
    extend: float = 1.0

    @classmethod
    def from_spec(cls, raw: Mapping[str, Any] | None) -> NarrowingPolicy:
        """The policy of a study (its spec's `narrowing:` block), defaults elsewhere."""
        return cls(**dict(raw or {}))


@dataclass(frozen=True)
class BorderFlag:
    """A best value sitting near an edge of its range."""

    param: str
    value: float
    edge: str  # "lower" | "upper"
    low: float
    high: float

    @property
    def message(self) -> str:
        return (
            f"best {self.param} {self.value:.3g} is on the {self.edge} border of "
            f"[{self.low:.3g}, {self.high:.3g}]"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "param": self.param,
            "value": self.value,
            "edge": self.edge,
            "low": self.low,
            "high": self.high,
            "message": self.message,
        }


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


def _hard_limits(dist: NumericDistribution) -> tuple[float, float]:
    # A uniform range that started inside [0, 1] (dropout, momentum) stays below 1.
    if not dist.log and 0.0 <= dist.low and dist.high <= 1.0 and not dist.integer:
        return 0.0, 0.999
    if dist.integer:
        return 1.0, float("inf")
    return float("-inf"), float("inf")


def border_flags(
    space: Mapping[str, Distribution],
    best: Mapping[str, Any],
    policy: NarrowingPolicy = NarrowingPolicy(),
) -> list[BorderFlag]:
    """Flag every numeric parameter whose best value lies within `policy.border` of an edge.

    A range with `low == high` has no interior and is never flagged.
    """
    flags = []
    for name, dist in space.items():
        if not isinstance(dist, NumericDistribution) or name not in best:
            continue
        lo, hi = dist.to_scale(dist.low), dist.to_scale(dist.high)
        if hi <= lo:
            continue
        pos = (dist.to_scale(float(best[name])) - lo) / (hi - lo)
        hard_lo, hard_hi = _hard_limits(dist)
        if pos <= policy.border + _EPS and dist.low > hard_lo:
            flags.append(BorderFlag(name, float(best[name]), "lower", dist.low, dist.high))
        elif pos >= 1.0 - policy.border - _EPS and dist.high < hard_hi:
            flags.append(BorderFlag(name, float(best[name]), "upper", dist.low, dist.high))
    return flags


def _narrow_numeric(
    dist: NumericDistribution,
    values: Sequence[float],
    flagged: set[str],
    policy: NarrowingPolicy,
) -> tuple[NumericDistribution, str]:
    lo, hi = dist.to_scale(dist.low), dist.to_scale(dist.high)
    width = hi - lo
    scaled = [dist.to_scale(float(v)) for v in values]
    top_lo, top_hi = min(scaled), max(scaled)
    pad = max(policy.margin * (top_hi - top_lo), 0.5 * policy.min_width * width)
    new_lo, new_hi = max(lo, top_lo - pad), min(hi, top_hi + pad)
    why = f"span of the top {len(values)} trials plus a margin"
    hard_lo, hard_hi = _hard_limits(dist)
    if "lower" in flagged:
        new_lo = lo - policy.extend * width
        why = "best value on the lower border: extended below it"
    if "upper" in flagged:
        new_hi = hi + policy.extend * width
        why = "best value on the upper border: extended above it"
    low = max(dist.from_scale(new_lo), hard_lo)
    high = min(dist.from_scale(new_hi), hard_hi)
    if dist.log:
        low = max(low, dist.low * 1e-12)  # stays positive
    return dist.with_bounds(low, max(low, high)), why


def narrow_space(
    space: Mapping[str, Distribution],
    top_params: Sequence[Mapping[str, Any]],
    policy: NarrowingPolicy = NarrowingPolicy(),
) -> tuple[dict[str, Distribution], list[BorderFlag], list[Decision]]:
    """The next stage's space from this stage's top trials (best first).

    Returns:
        The new space, the border flags of the best trial, and one decision per parameter.
        With no scored trial the space is kept unchanged.
    """
    if not top_params:
        decisions = [
            Decision(n, d.to_json(), d.to_json(), "no scored trial: range kept")
            for n, d in space.items()
        ]
        return dict(space), [], decisions
    flags = border_flags(space, top_params[0], policy)
    flagged: dict[str, set[str]] = {}
    for flag in flags:
        flagged.setdefault(flag.param, set()).add(flag.edge)
    new_space: dict[str, Distribution] = {}
    decisions = []
    for name, dist in space.items():
        values = [p[name] for p in top_params if name in p]
        if not values:
            new_space[name] = dist
            why = "no top trial has this parameter: range kept"
        elif isinstance(dist, Choice):
            kept = tuple(o for o in dist.options if o in values)
            new_space[name] = Choice(kept)
            why = f"kept the options found among the top {len(values)} trials"
        elif isinstance(dist, NumericDistribution):
            new_space[name], why = _narrow_numeric(dist, values, flagged.get(name, set()), policy)
        else:  # pragma: no cover - every distribution is numeric or a choice
            new_space[name] = dist
            why = "range kept"
        decisions.append(Decision(name, dist.to_json(), new_space[name].to_json(), why))
    return new_space, flags, decisions
