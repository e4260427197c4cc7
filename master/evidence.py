"""What a stage's trials say about its ranges beyond their best scores, as pure
functions: divergence is evidence, and so are the babysitting warnings (the seed's
"Babysitting the learning process"), and so is a trial that learned nothing, judged
against the study's own spread of scores (`nothing_learned`), not against chance.

Each finished trial of a stage is one `TrialOutcome`. A trial counts once, whatever
number of warnings it raised: it is *too high* when it diverged, or reported an
update:weight ratio far above 1e-3 (`lr_too_high`) or dead ReLUs after large updates
(`dead_units`); *too low* when it reported a ratio far below 1e-3 and nothing of the
above. When most trials of a stage are too high (or too low), the learning-rate range is
flagged, with the boundary above which (below which) they sit; the narrowing then moves
the range away from that region. The scores speak first: `score_trends` says whether
the scores rise toward a border (Spearman's rank correlation with its p-value; diverged
trials count as the worst scores), and `narrowing.border_decision` never moves a range
against it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from scipy import stats

from gridless.common.metric import Metric
from gridless.common.space import Distribution, NumericDistribution
from gridless.master.narrowing import MIN_TREND_TRIALS, TREND_Z, BorderFlag, Trend

__all__ = [
    "FLAT_SHARE",
    "TOO_HIGH_CODES",
    "TREND_Z",
    "TrialOutcome",
    "boundary",
    "learning_rate_flags",
    "learning_rate_param",
    "nothing_learned",
    "pooled_trends",
    "score_trends",
]

MAXIMIZED = Metric.of("score", maximize=True)  # the default objective: larger is better

# The warning codes that say "learning rate too high" (worker/diagnostics/babysit.py).
TOO_HIGH_CODES = frozenset({"diverged", "lr_too_high", "dead_units"})
# A trial learned nothing when its score lies within this share of the study's spread of
# scores (its best score so far, any stage, against this stage's worst) from the worst.
FLAT_SHARE = 0.1
# The code `nothing_learned` gives such a trial (beside the babysitting warnings' codes).
FLAT = "flat"
# The rest of a range is a sliver when it is under this share of the width.
SLIVER = 0.25


@dataclass(frozen=True)
class TrialOutcome:
    """One finished trial of a stage, as the narrowing sees it."""

    params: Mapping[str, Any]
    score: float | None  # its best score; None when no epoch scored
    state: str  # a TrialState value
    codes: frozenset[str] = field(default_factory=frozenset)  # its warning codes

    @property
    def diverged(self) -> bool:
        return self.state == "diverged" or "diverged" in self.codes

    @property
    def dead(self) -> bool:
        """Its ReLUs died (worker/diagnostics/babysit.py): its score is chance, not data."""
        return "dead_units" in self.codes

    @property
    def too_high(self) -> bool:
        """Diverged, or babysitting says its learning rate was too high."""
        return self.diverged or bool(self.codes & TOO_HIGH_CODES)

    @property
    def too_low(self) -> bool:
        """Babysitting says its learning rate was too low: an update:weight ratio far below
        1e-3, or nothing learned (`not_learning`: the seed's "loss barely changing: the
        learning rate is probably too low"), or a score no better than the study's worst
        (`nothing_learned`), and nothing says too high (no divergence, no dead units, no
        spike: worker/diagnostics/babysit.py)."""
        return bool(self.codes & {"lr_too_low", "not_learning", FLAT}) and not self.too_high

    @property
    def usable(self) -> bool:
        """It scored and did not diverge: its score can shape the next range."""
        return self.score is not None and not self.diverged


def learning_rate_param(space: Mapping[str, Distribution], named: str | None) -> str | None:
    """The parameter divergence and the update:weight ratio speak about: `named` (the
    spec's `narrowing.lr_param`), else `learning_rate`, else `lr`, when numeric."""
    for name in (named,) if named else ("learning_rate", "lr"):
        if isinstance(space.get(name), NumericDistribution):
            return name
    return None


def boundary(values: Sequence[float], bad: Sequence[bool], *, bad_above: bool) -> float:
    """The threshold that best separates `bad` from good values (a decision stump).

    Args:
        values: the trials' values in the sampling scale.
        bad: per trial, whether it is in the region sought.
        bad_above: the region lies above the threshold (too high) or below (too low).

    Returns:
        The threshold in scale, halfway between the two trials it falls between: the
        split with the fewest trials on the wrong side; on a tie, the one that leaves the
        bad region smallest. Every trial bad: the lowest (highest) value.
    """
    if not values:
        raise ValueError("boundary: needs at least one trial")
    order = sorted(zip(values, bad, strict=True), key=lambda p: p[0], reverse=not bad_above)
    xs = [v for v, _ in order]
    flags = [b for _, b in order]
    # split k: the first k trials (by value toward the good side) are called good
    best_k, best_err = 0, math.inf
    for k in range(len(xs) + 1):
        err = sum(flags[:k]) + sum(not b for b in flags[k:])
        if err < best_err or (err == best_err and k > best_k):
            best_k, best_err = k, err
    if best_k == 0:
        return xs[0]
    if best_k == len(xs):
        return xs[-1]
    return (xs[best_k - 1] + xs[best_k]) / 2


def learning_rate_flags(
    space: Mapping[str, Distribution],
    outcomes: Sequence[TrialOutcome],
    *,
    param: str | None = None,
    majority: float = 0.5,
    border: float = 0.1,
    objective: Metric = MAXIMIZED,
) -> list[BorderFlag]:
    """Flags from divergence and babysitting: when most of a stage's trials are too high
    (diverged, `lr_too_high`, `dead_units`), the learning-rate range is too high; when
    most are too low (an update:weight ratio far below ~1e-3, or not learning), too low.

    Each trial counts once. The flag's `value` is the boundary of that region; the next
    range leaves the region (`narrow_space`). The flag walks (the range moves by whole
    widths, and the study may add a stage) when the evidence is strong (most trials
    failed outright: diverged or died; every too-low trial is such a failure) and what
    lies outside the region cannot hold the optimum: no trial trained there, or it is a
    sliver (a quarter of the width, or `border` if more), or its best trial sits within
    `border` of its far edge. A ratio warning on a trial that scored is weak evidence: it
    flags and bounds the range, and walks it only with the best value on the border it
    points to (`narrow_space`).
    """
    name = learning_rate_param(space, param)
    if name is None or not outcomes:
        return []
    dist = space[name]
    assert isinstance(dist, NumericDistribution)
    if dist.low >= dist.high:
        return []
    trials = len(outcomes)
    high = sum(o.too_high for o in outcomes)
    low = sum(o.too_low for o in outcomes)
    placed = [
        (o, dist.to_scale(_clip(float(o.params[name]), dist)))
        for o in outcomes
        if name in o.params
    ]
    if not placed:
        return []
    lo, hi = dist.to_scale(dist.low), dist.to_scale(dist.high)
    sliver = max(border, SLIVER) * (hi - lo)
    if high >= majority * trials and high > low:
        t = boundary([v for _, v in placed], [o.too_high for o, _ in placed], bad_above=True)
        # trials that trained below the boundary (scored, neither diverged nor dead)
        rest = [(o, v) for o, v in placed if v < t and o.usable and not o.dead]
        strong = sum(o.diverged or o.dead for o in outcomes) >= majority * trials
        walk = strong and (
            not rest
            or t - lo <= sliver
            or _outer(rest, lo, t, objective, toward_low=True, border=border)
        )
        evidence = f"{_too_high_counts(outcomes, high, trials)} (from {dist.from_scale(t):.3g} up)"
        return [
            BorderFlag(name, dist.from_scale(t), "lower", dist.low, dist.high, evidence, walk=walk)
        ]
    if low >= majority * trials and low > high:
        t = boundary([v for _, v in placed], [o.too_low for o, _ in placed], bad_above=False)
        rest = [(o, v) for o, v in placed if v > t and o.usable and not o.too_low]
        walk = (
            not rest
            or hi - t <= sliver
            or _outer(rest, t, hi, objective, toward_low=False, border=border)
        )
        ratio = sum(o.too_low and "lr_too_low" in o.codes for o in outcomes)
        parts = [
            f"{ratio} with an update:weight ratio far below 1e-3" if ratio else "",
            f"{low - ratio} not learning" if low - ratio else "",
        ]
        evidence = (
            f"{low} of {trials} trials are too low ({', '.join(p for p in parts if p)}) "
            f"(up to {dist.from_scale(t):.3g})"
        )
        return [
            BorderFlag(name, dist.from_scale(t), "upper", dist.low, dist.high, evidence, walk=walk)
        ]
    return []


def _outer(
    rest: Sequence[tuple[TrialOutcome, float]],
    lo: float,
    hi: float,
    objective: Metric,
    *,
    toward_low: bool,
    border: float,
) -> bool:
    """Whether the best of the trials outside a flagged region sits on the far border of
    what lies outside it ([lo, hi] in scale): the optimum lies beyond the old range."""
    scored = [(o, v) for o, v in rest if o.score is not None]
    if not scored or hi <= lo:
        return False
    _, best = objective.best(scored, key=lambda p: float(p[0].score or 0.0))
    pos = (best - lo) / (hi - lo)
    return pos <= border if toward_low else pos >= 1.0 - border


def _too_high_counts(outcomes: Sequence[TrialOutcome], high: int, trials: int) -> str:
    """ "6 of 6 trials diverged", or the causes, each trial once by its strongest."""
    diverged = sum(o.diverged for o in outcomes)
    dead = sum(o.dead and not o.diverged for o in outcomes)
    ratio = high - diverged - dead
    if diverged == high:
        return f"{high} of {trials} trials diverged"
    parts = [
        f"{diverged} diverged" if diverged else "",
        f"{dead} with dead units" if dead else "",
        f"{ratio} with an update:weight ratio far above 1e-3" if ratio else "",
    ]
    return f"{high} of {trials} trials are too high ({', '.join(p for p in parts if p)})"


def _clip(value: float, dist: NumericDistribution) -> float:
    # an enqueued configuration may lie outside the range: place it on the nearest edge
    return min(max(value, dist.low), dist.high)


def nothing_learned(
    outcomes: Sequence[TrialOutcome],
    *,
    study_best: float | None,
    objective: Metric,
    param: str | None,
    space: Mapping[str, Distribution],
    study_worst: float | None = None,
) -> list[TrialOutcome]:
    """The outcomes, each trial that learned nothing given the `flat` code.

    A trial learned nothing when its score is indistinguishable from the study's worst:
    within `FLAT_SHARE` of the study's spread of scores (its best and worst so far, at
    any stage, with this stage's), so a macro-F1 model that sits at 0.18-0.23 while
    other trials reach 0.9 counts, whatever chance is, and a late stage whose trials all
    sit near the best does not. It says "too low" only
    where such trials lie below those that learned (a decision stump over `param`
    separates them better that way round); lying above, it is no evidence of either
    direction here (divergence and the ratio warnings speak there). With fewer than
    `MIN_TREND_TRIALS` scored trials, or no spread at all, nothing changes.
    """
    scored = [o for o in outcomes if o.usable and o.score is not None]
    if len(scored) < MIN_TREND_TRIALS or param is None:
        return list(outcomes)
    dist = space.get(param)
    if not isinstance(dist, NumericDistribution) or dist.low >= dist.high:
        return list(outcomes)
    signed = [objective.sign * float(o.score or 0.0) for o in scored]
    worst = min([*signed, *([objective.sign * study_worst] if study_worst is not None else [])])
    best = max([*signed, *([objective.sign * study_best] if study_best is not None else [])])
    spread = best - worst
    if not spread > 0 or not math.isfinite(spread):
        return list(outcomes)
    flat = [o for o, v in zip(scored, signed, strict=True) if v - worst <= FLAT_SHARE * spread]
    flat_ids = {id(o) for o in flat}
    placed = [
        (dist.to_scale(_clip(float(o.params[param]), dist)), id(o) in flat_ids)
        for o in scored
        if param in o.params
    ]
    if not placed or len(flat) == len(scored):
        return list(outcomes)
    xs, bad = [v for v, _ in placed], [b for _, b in placed]
    below = _stump_errors(xs, bad, bad_above=False)
    above = _stump_errors(xs, bad, bad_above=True)
    if below >= above:
        return list(outcomes)
    return [
        TrialOutcome(o.params, o.score, o.state, o.codes | {FLAT}) if id(o) in flat_ids else o
        for o in outcomes
    ]


def _stump_errors(values: Sequence[float], bad: Sequence[bool], *, bad_above: bool) -> int:
    """The trials on the wrong side of `boundary`'s best split."""
    t = boundary(values, bad, bad_above=bad_above)
    return sum((v > t if bad_above else v < t) != b for v, b in zip(values, bad, strict=True))


def _one_sided_z(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Spearman's rho of y on x and its one-sided p-value as a normal score (positive:
    y rises with x); (0, 0) when either side is constant or too short."""
    if len(x) < MIN_TREND_TRIALS or len(set(x)) < 2 or len(set(y)) < 2:
        return 0.0, 0.0
    result = stats.spearmanr(x, y, alternative="greater")
    rho, p = float(result.statistic), float(result.pvalue)
    if not (math.isfinite(rho) and math.isfinite(p)):
        return 0.0, 0.0
    z = float(stats.norm.isf(min(max(p, 1e-15), 1 - 1e-15)))
    return rho, z


def score_trends(
    space: Mapping[str, Distribution],
    scored: Sequence[tuple[Mapping[str, Any], float]],
    *,
    objective: Metric,
    diverged: Sequence[Mapping[str, Any]] = (),
    diverged_param: str | None = None,
) -> dict[str, Trend]:
    """Per numeric parameter, how the scores move as its value grows (in its sampling
    scale): Spearman's rank correlation with scipy's one-sided p-value, as a normal score
    `z` (above `TREND_Z`: the scores rise toward the upper border; below -`TREND_Z`,
    toward the lower one), and the same within the upper and the lower half of the
    trials by value (a decline toward an edge inside its half: the optimum is inside).

    `diverged` are the parameters of trials that diverged: they count as tied below
    every score (a diverged trial is the worst outcome there is) in the trend of
    `diverged_param` (the learning rate, which divergence speaks about), or of every
    parameter when it is None. Failed trials (the code raised) are no evidence about a
    range and are not passed. Fewer than
    `MIN_TREND_TRIALS` trials with a value: no trend (`n` says how many).
    """
    trends: dict[str, Trend] = {}
    ys = [objective.sign * float(s) for _, s in scored if math.isfinite(s)]
    floor = (min(ys) - 1.0) if ys else 0.0
    for name, dist in space.items():
        if not isinstance(dist, NumericDistribution):
            continue
        pairs = [
            (float(p[name]), objective.sign * float(s))
            for p, s in scored
            if name in p and math.isfinite(s)
        ]
        if diverged_param is None or name == diverged_param:
            pairs += [(float(p[name]), floor) for p in diverged if name in p]
        if len(pairs) < MIN_TREND_TRIALS or dist.low >= dist.high:
            trends[name] = Trend(n=len(pairs))
            continue
        pairs.sort(key=lambda p: p[0])
        x = [dist.to_scale(_clip(v, dist)) for v, _ in pairs]
        y = [s for _, s in pairs]
        rho, z = _one_sided_z(x, y)
        half = len(x) // 2
        _, upper = _one_sided_z(x[half:], y[half:])
        _, lower = _one_sided_z(x[: len(x) - half], y[: len(x) - half])
        trends[name] = Trend(z=z, rho=rho, n=len(pairs), upper_z=upper, lower_z=lower)
    return trends


def pooled_trends(
    space: Mapping[str, Distribution],
    groups: Sequence[Sequence[tuple[Mapping[str, Any], float]]],
    *,
    objective: Metric,
) -> dict[str, Trend]:
    """Per numeric parameter, the trend over several stages' scored trials (the current
    stage's first), each stage's own trend over its trials inside the current range,
    combined by Stouffer's weighted z (weights sqrt(n)): stages train for different
    epochs, so their scores are ranked within each stage, never across. For a small
    stage, whose own trials are too few to test a trend."""
    pooled: dict[str, Trend] = {}
    for name, dist in space.items():
        if not isinstance(dist, NumericDistribution) or dist.low >= dist.high:
            continue
        zs: list[tuple[float, float, int]] = []
        for group in groups:
            inside = [(p, s) for p, s in group if name in p and dist.contains(float(p[name]))]
            if len(inside) < 3:
                continue
            x = [dist.to_scale(float(p[name])) for p, _ in inside]
            y = [objective.sign * float(s) for _, s in inside if math.isfinite(s)]
            if len(y) != len(x) or len(set(x)) < 2 or len(set(y)) < 2:
                continue
            result = stats.spearmanr(x, y, alternative="greater")
            rho, p = float(result.statistic), float(result.pvalue)
            if not (math.isfinite(rho) and math.isfinite(p)):
                continue
            zs.append((float(stats.norm.isf(min(max(p, 1e-15), 1 - 1e-15))), rho, len(x)))
        n = sum(k for _, _, k in zs)
        if not n:
            pooled[name] = Trend()
            continue
        z = sum(math.sqrt(k) * zi for zi, _, k in zs) / math.sqrt(n)
        rho = sum(k * r for _, r, k in zs) / n
        pooled[name] = Trend(z=z, rho=rho, n=n)
    return pooled
