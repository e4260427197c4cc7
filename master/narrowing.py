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

from gridless.common.space import Choice, Distribution, NumericDistribution

__all__ = [
    "BorderFlag",
    "Decision",
    "NarrowingPolicy",
    "border_flags",
    "learning_rate_flags",
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
        extend: a flagged edge moves outward by this fraction of the old width (0.5: a
            range of 3 decades flagged at its top gains 1.5 decades above it).
    """

    top_fraction: float = 0.2
    min_top: int = 3
    margin: float = 0.25
    min_width: float = 0.1
    border: float = 0.1
    extend: float = 0.5

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
    evidence: str | None = None  # set when babysitting, not the best value, raised it

    @property
    def message(self) -> str:
        where = f"[{self.low:.3g}, {self.high:.3g}]"
        if self.evidence is not None:
            side = "low" if self.edge == "upper" else "high"
            return f"{self.param} range {where} is too {side}: {self.evidence}"
        return f"best {self.param} {self.value:.3g} is on the {self.edge} border of {where}"

    def to_json(self) -> dict[str, Any]:
        return {
            "param": self.param,
            "value": self.value,
            "edge": self.edge,
            "low": self.low,
            "high": self.high,
            "evidence": self.evidence,
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
        why = "on the lower border: extended below it"
    if "upper" in flagged:
        new_hi = hi + policy.extend * width
        why = "on the upper border: extended above it"
    low = max(dist.from_scale(new_lo), hard_lo)
    high = min(dist.from_scale(new_hi), hard_hi)
    # 10**log10(x) can land a hair outside the old bounds; only a flagged edge may move out.
    if "lower" not in flagged:
        low = max(low, dist.low)
    if "upper" not in flagged:
        high = min(high, dist.high)
    if dist.log:
        low = max(low, dist.low * 1e-12)  # stays positive
    return dist.with_bounds(low, max(low, high)), why


def learning_rate_flags(
    space: Mapping[str, Distribution],
    warning_counts: Mapping[str, int],
    trials: int,
    *,
    majority: float = 0.5,
) -> list[BorderFlag]:
    """Flags from babysitting: when most of a stage's trials report an update:weight
    ratio far below ~1e-3 (`lr_too_low`), the learning-rate range is too low, whatever
    the noisy scores say; when most diverge or report `lr_too_high`, it is too high."""
    dist = space.get("learning_rate")
    if not isinstance(dist, NumericDistribution) or trials <= 0 or dist.low >= dist.high:
        return []
    low = warning_counts.get("lr_too_low", 0)
    high = warning_counts.get("lr_too_high", 0) + warning_counts.get("diverged", 0)
    if low >= majority * trials and low > high:
        evidence = f"{low} of {trials} trials report an update:weight ratio far below 1e-3"
        return [BorderFlag("learning_rate", dist.high, "upper", dist.low, dist.high, evidence)]
    if high >= majority * trials and high > low:
        evidence = f"{high} of {trials} trials diverged or report a ratio far above 1e-3"
        return [BorderFlag("learning_rate", dist.low, "lower", dist.low, dist.high, evidence)]
    return []


def narrow_space(
    space: Mapping[str, Distribution],
    top_params: Sequence[Mapping[str, Any]],
    policy: NarrowingPolicy = NarrowingPolicy(),
    *,
    evidence_flags: Sequence[BorderFlag] = (),
) -> tuple[dict[str, Distribution], list[BorderFlag], list[Decision]]:
    """The next stage's space from this stage's top trials (best first).

    Args:
        evidence_flags: flags raised from babysitting (`learning_rate_flags`); they take
            the place of a best-value flag on the same parameter.

    Returns:
        The new space, the border flags, and one decision per parameter. With no scored
        trial the space is kept unchanged.
    """
    if not top_params:
        decisions = [
            Decision(n, d.to_json(), d.to_json(), "no scored trial: range kept")
            for n, d in space.items()
        ]
        return dict(space), [], decisions
    overridden = {f.param for f in evidence_flags}
    flags = [
        *evidence_flags,
        *(f for f in border_flags(space, top_params[0], policy) if f.param not in overridden),
    ]
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
