"""The stage controller: coarse-to-fine, stage by stage (the seed's "Stage your search
from coarse to fine").

When a stage's last trial finishes, the stage closes: its top trials (by validation
score) narrow the ranges of the next stage, values on a border flag it and widen past it,
divergence and babysitting move a range away from where it fails (master/evidence.py),
and the next stage opens; after the last stage, the final flags are recorded and the
study completes, the moment its last trial does. A stage whose flags walk (the range was
wrong, or nothing scored) is followed by one more stage of its own shape, up to
`narrowing.max_extra_stages`, so a walk can arrive before the finer stages run. The
protocol calls `advance` in the transaction that finishes a trial; the monitor's timer
calls `advance_all`, for a study that was paused or resumed while its stage filled.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import replace
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gridless.common.db import StageRow, StudyRow, TrialRow, utcnow
from gridless.common.errors import ConflictError
from gridless.common.space import parse_space, space_to_json
from gridless.common.states import StageState, StudyState, TrialState
from gridless.master import notify, pareto, rescore
from gridless.master.evidence import (
    TrialOutcome,
    learning_rate_flags,
    learning_rate_param,
    nothing_learned,
    pooled_trends,
    score_trends,
)
from gridless.master.liveness import release_worker
from gridless.master.narrowing import BorderFlag, NarrowingPolicy, narrow_space

__all__ = [
    "OPEN_STATES",
    "advance",
    "advance_all",
    "complete",
    "end_study",
    "extend",
    "running_stage",
    "target_reached",
]

MAX_STAGES = 100

log = logging.getLogger(__name__)

OPEN_STATES = [st.value for st in TrialState if not st.is_finished()]


def running_stage(s: Session, study: StudyRow) -> StageRow | None:
    """The study's open stage, or None once the last one closed."""
    return s.scalar(
        select(StageRow).where(
            StageRow.study_id == study.id, StageRow.state == StageState.RUNNING.value
        )
    )


def complete(study: StudyRow) -> None:
    study.state = StudyState.COMPLETED.value
    study.finished_at = utcnow()
    notify.study_finished(study)


def advance(s: Session, study: StudyRow) -> bool:
    """Close the running study's stage if all its trials finished, and open the next (or
    complete the study); True when something changed."""
    if study.state != StudyState.RUNNING.value:
        return False
    reason = _budget_spent(s, study)
    if reason is not None:
        end_study(s, study, reason)
        return True
    stage = running_stage(s, study)
    if stage is None:
        waiting = s.scalar(
            select(StageRow)
            .where(StageRow.study_id == study.id, StageRow.state == StageState.WAITING.value)
            .order_by(StageRow.index)
            .limit(1)
        )
        done = s.scalar(
            select(StageRow)
            .where(StageRow.study_id == study.id, StageRow.state == StageState.DONE.value)
            .order_by(StageRow.index.desc())
            .limit(1)
        )
        if waiting is not None and done is not None:  # stages added to a finished study
            kept = (done.decisions or {}).get("rescore")
            _narrow(s, study, done, waiting)
            if kept is not None:  # the narrowing rewrote the decisions: keep re-scoring's
                done.decisions = {**done.decisions, "rescore": kept}
        else:
            complete(study)  # a study whose stages all closed: nothing is left to run
        return True
    trials = s.scalar(
        select(func.count()).select_from(TrialRow).where(TrialRow.stage_id == stage.id)
    )
    busy = s.scalar(
        select(func.count())
        .select_from(TrialRow)
        .where(TrialRow.stage_id == stage.id, TrialRow.state.in_(OPEN_STATES))
    )
    if (trials or 0) < stage.trials or busy:
        return False
    if rescore.hold(s, study, stage):  # the top re-runs on more seeds first
        return True
    record = rescore.settle(s, study, stage)
    _close(s, study, stage)
    if record is not None:
        stage.decisions = {**stage.decisions, "rescore": record}
    notify.flags_raised(stage)
    return True


def advance_all(s: Session) -> list[int]:
    """`advance` every running study; the ids of those that moved."""
    moved = []
    studies = s.scalars(select(StudyRow).where(StudyRow.state == StudyState.RUNNING.value))
    for study in list(studies):
        if advance(s, study):
            moved.append(study.id)
    return moved


def _close(s: Session, study: StudyRow, stage: StageRow) -> None:
    """Record the stage's decisions; open the next stage with narrowed ranges (after one
    more stage of this one's shape when its flags walk), or complete the study after its
    last."""
    stage.state = StageState.DONE.value
    nxt = s.scalar(
        select(StageRow).where(StageRow.study_id == study.id, StageRow.index == stage.index + 1)
    )
    reason = _no_progress(s, study)
    if nxt is not None and reason is not None:
        end_study(s, study, reason)
        return
    plan = _plan(s, study, stage)
    refused = None
    if plan.walks and _extra_stages_left(s, study) > 0:
        added, refused = _add_stage(s, study, stage, plan)
        nxt = added or nxt
    if nxt is None:
        # the last stage's own border decisions (its trends included): a parameter whose
        # scores show no trend is not named, wherever its best value sits
        final = [replace(f, note=None, beyond_range=False) for f in plan.flags]
        stage.decisions = {
            "flags": [f.to_json() for f in final],
            "decisions": [],
            "counts": plan.decisions["counts"],
        }
        if refused is not None:
            stage.decisions["budget"] = refused
        complete(study)
        log.info("study %s completed", study.name)
        return
    _open(s, study, stage, nxt, plan)


class _Plan:
    """What a closed stage decides for the next one."""

    def __init__(
        self, space: dict[str, Any], flags: list[BorderFlag], decisions: dict[str, Any]
    ) -> None:
        self.space, self.flags, self.decisions = space, flags, decisions

    @property
    def walks(self) -> bool:
        """A flag moved a range by whole widths: the range was wrong."""
        return any(f.walk for f in self.flags)


def _plan(s: Session, study: StudyRow, stage: StageRow) -> _Plan:
    """The next ranges from `stage`'s finished trials: the top scored ones (diverged
    trials excluded) narrow them, border flags widen them, and divergence and babysitting,
    counted per trial, move a range away from where its trials fail."""
    policy = NarrowingPolicy.for_study(study.spec)
    space = parse_space(stage.space)
    rows = s.execute(
        select(
            TrialRow.number,
            TrialRow.params,
            TrialRow.selection_score,  # a re-scored configuration's mean over seeds
            TrialRow.state,
            TrialRow.warnings,
        )
        # re-runs of the top on more seeds are no new evidence about the ranges: their
        # configuration counts once (see master/rescore.py)
        .where(TrialRow.stage_id == stage.id, TrialRow.origin.is_distinct_from(rescore.ORIGIN))
        .order_by(TrialRow.number)
    ).all()
    numbered = [
        (number, TrialOutcome(params or {}, score, state, _codes(warnings)))
        for number, params, score, state, warnings in rows
    ]
    name = learning_rate_param(space, policy.lr_param)
    study_best, study_worst = s.execute(
        select(func.max(TrialRow.best_score), func.min(TrialRow.best_score)).where(
            TrialRow.study_id == study.id
        )
    ).one()
    if not study.objective.maximize:
        study_best, study_worst = study_worst, study_best
    judged = nothing_learned(
        [o for _, o in numbered],
        study_best=study_best,
        study_worst=study_worst,
        objective=study.objective,
        param=name,
        space=space,
    )
    numbered = [(n, o) for (n, _), o in zip(numbered, judged, strict=True)]
    outcomes = [o for _, o in numbered]
    usable = [o for o in outcomes if o.usable]
    sign = study.objective.sign  # best first; ties keep trial-number order
    ranked_usable = sorted(
        ((n, o) for n, o in numbered if o.usable), key=lambda p: -sign * float(p[1].score or 0)
    )
    n_top = min(len(usable), max(policy.min_top, math.ceil(policy.top_fraction * len(usable))))
    # a multi-objective study narrows around its stage's Pareto front (master/pareto.py)
    picked = pareto.front_of_stage(s, study, stage, ranked_usable) or ranked_usable[:n_top]
    top = [o for _, o in picked]
    evidence = learning_rate_flags(
        space, outcomes, param=policy.lr_param, border=policy.border, objective=study.objective
    )
    trends = score_trends(
        space,
        [(o.params, float(o.score)) for o in usable if o.score is not None],
        objective=study.objective,
        diverged=[o.params for o in outcomes if o.diverged] if name is not None else [],
        diverged_param=name,
    )
    small = [k for k, t in trends.items() if not t.tested]
    if small:  # too few trials of its own: the earlier stages' inside its range help
        earlier = _earlier_scored(s, study, stage)
        current = [(o.params, float(o.score)) for o in usable if o.score is not None]
        pooled = pooled_trends(space, [current, *earlier], objective=study.objective)
        trends.update({k: pooled[k] for k in small if k in pooled and pooled[k].tested})
    new_space, flags, decisions = narrow_space(
        space, [o.params for o in top], policy, evidence_flags=evidence, trends=trends
    )
    counts = {
        "trials": len(outcomes),
        "scored": len(usable),
        "diverged": sum(o.diverged for o in outcomes),
        "failed": sum(o.state == TrialState.FAILED.value for o in outcomes),
        "too_high": sum(o.too_high for o in outcomes),
        "too_low": sum(o.too_low for o in outcomes),
        "learned_nothing": sum("flat" in o.codes for o in outcomes),
    }
    record: dict[str, Any] = {
        "flags": [f.to_json() for f in flags],
        "decisions": [d.to_json() for d in decisions],
        "top_trials": [n for n, _ in picked],
        "counts": counts,
    }
    if not usable:
        record["no_score"] = _no_score_why(counts, moved=any(f.walk for f in flags))
    return _Plan(space_to_json(new_space), flags, record)


def _earlier_scored(
    s: Session, study: StudyRow, stage: StageRow
) -> list[list[tuple[dict[str, Any], float]]]:
    """The scored trials of the study's earlier stages, one list a stage (re-runs on
    more seeds excluded)."""
    rows = s.execute(
        select(TrialRow.stage_id, TrialRow.params, TrialRow.selection_score).where(
            TrialRow.study_id == study.id,
            TrialRow.stage_id != stage.id,
            TrialRow.selection_score.is_not(None),
            TrialRow.state != TrialState.DIVERGED.value,
            TrialRow.origin.is_distinct_from(rescore.ORIGIN),
        )
    ).all()
    groups: dict[int, list[tuple[dict[str, Any], float]]] = {}
    for stage_id, params, score in rows:
        groups.setdefault(stage_id, []).append((params or {}, float(score)))
    return list(groups.values())


def _codes(warnings: list[dict[str, Any]] | None) -> frozenset[str]:
    return frozenset(str(w.get("code")) for w in warnings or [])


def _no_score_why(counts: dict[str, int], *, moved: bool) -> str:
    """Why a stage in which no trial scored moved its ranges, or did not."""
    what = f"no trial of {counts['trials']} scored ({counts['diverged']} diverged, " + (
        f"{counts['failed']} failed)"
    )
    if moved:
        return f"{what}: the ranges moved away from the divergence"
    return (
        f"{what}: no evidence points a direction, so the ranges are kept (failures are the "
        "circuit breaker's to judge)"
    )


def _open(s: Session, study: StudyRow, stage: StageRow, nxt: StageRow, plan: _Plan) -> None:
    """Open `nxt` with `plan`'s ranges, recording `stage`'s decisions."""
    stage.decisions = plan.decisions
    nxt.space = plan.space
    edited = study.spec.get("next_space")
    if edited:  # a person set the next stage's ranges (PATCH .../space): they win
        nxt.space = edited
        stage.decisions["edited"] = "the next stage's ranges were set by PATCH .../space"
        study.spec = {k: v for k, v in study.spec.items() if k != "next_space"}
    nxt.state = StageState.RUNNING.value
    for flag in plan.flags:
        log.info("stage %d: %s", stage.index + 1, flag.message)


def _narrow(s: Session, study: StudyRow, stage: StageRow, nxt: StageRow) -> None:
    """Open `nxt` with the ranges `stage`'s top trials narrow to (border flags widen)."""
    _open(s, study, stage, nxt, _plan(s, study, stage))


def _extra_stages_left(s: Session, study: StudyRow) -> int:
    """How many more stages a walk may add (`narrowing.max_extra_stages`, less those
    added already)."""
    policy = NarrowingPolicy.for_study(study.spec)
    decided = s.scalars(select(StageRow.decisions).where(StageRow.study_id == study.id))
    added = sum(1 for d in decided if d and d.get("added_stage"))
    return policy.max_extra_stages - added


def plan_epochs(study: StudyRow) -> int:
    """The study's stated epoch budget: its stages' trials x epochs as the user wrote them
    (and appended with `extend` or `add_trials`), not the stages a walk added."""
    budget = study.spec.get("epoch_budget")
    if budget is not None:
        return int(budget)
    return sum(int(st["trials"]) * int(st["epochs"]) for st in study.spec["stages"])


def epochs_trained(s: Session, study: StudyRow) -> int:
    """The epochs the study's trials trained (re-runs of the top on more seeds, which the
    spec's `rescore:` asks for on top, excluded)."""
    return int(
        s.scalar(
            select(func.coalesce(func.sum(TrialRow.last_epoch), 0)).where(
                TrialRow.study_id == study.id, TrialRow.origin.is_distinct_from(rescore.ORIGIN)
            )
        )
        or 0
    )


def _shrink(shapes: list[tuple[int, int]], room: int, least: int) -> list[int]:
    """Trials per stage of (trials, epochs) so that their epochs fit `room`: each stage in
    proportion, never under `least` trials (nor its own size), then one trial at a time
    from the stage with the most trials above its floor while they still do not fit."""
    planned = sum(t * e for t, e in shapes)
    scale = min(1.0, room / planned) if planned else 1.0
    floors = [min(t, least) for t, _ in shapes]
    keep = [max(f, math.floor(t * scale)) for (t, _), f in zip(shapes, floors, strict=True)]
    while sum(k * e for k, (_, e) in zip(keep, shapes, strict=True)) > room:
        spare = [(k - f, i) for i, (k, f) in enumerate(zip(keep, floors, strict=True)) if k > f]
        if not spare:
            break
        keep[max(spare)[1]] -= 1
    return keep


# An added stage smaller than this is no search: no stage is added then.
MIN_ADDED_TRIALS = 5


def _add_stage(
    s: Session, study: StudyRow, stage: StageRow, plan: _Plan
) -> tuple[StageRow | None, dict[str, Any] | None]:
    """Insert a stage of `stage`'s shape right after it (later stages move up one), so a
    walking range is searched again at this stage's cost before the finer stages run.

    The added stage spends the study's epoch budget (`plan_epochs`, plus the spec's
    `narrowing.extra_epochs`): what is left after the epochs trained so far pays for the
    later stages first at their planned size; when it cannot pay for the added stage
    too, the later stages give up trials (in proportion, each keeping `min_top`), then
    the added stage shrinks; below `MIN_ADDED_TRIALS` trials none is added. A study with
    no scored trial at all adds its stage even past the budget (otherwise it ends with
    nothing), and says so. Returns the added stage (or None) and the budget record.
    """
    policy = NarrowingPolicy.for_study(study.spec)
    budget = plan_epochs(study)
    allowed = budget + policy.extra_epochs
    spent = epochs_trained(s, study)
    later = list(
        s.scalars(
            select(StageRow)
            .where(StageRow.study_id == study.id, StageRow.index > stage.index)
            .order_by(StageRow.index)
        )
    )
    planned = sum(st.trials * st.epochs for st in later)
    left = allowed - spent
    trials, epochs = stage.trials, stage.epochs
    record: dict[str, Any] = {"plan_epochs": budget, "allowed": allowed, "spent": spent}
    shrunk: list[str] = []
    scored = s.scalar(
        select(func.count())
        .select_from(TrialRow)
        .where(TrialRow.study_id == study.id, TrialRow.best_score.is_not(None))
    )
    if trials * epochs + planned > left:
        if not scored:
            record["why"] = (
                f"past the epoch budget ({spent} of {allowed} spent): no trial of the study "
                "scored yet, and a study that ends with nothing has spent it for nothing"
            )
        else:
            # the later stages pay first, in proportion, each keeping min_top trials
            floor = sum(min(st.trials, policy.min_top) * st.epochs for st in later)
            room = left - trials * epochs
            if room < floor:  # they cannot pay it all: the added stage shrinks
                trials = max(0, (left - floor) // epochs)
                room = left - trials * epochs
            if trials < min(MIN_ADDED_TRIALS, stage.trials):
                record["why"] = (
                    f"no stage added: the epoch budget is spent ({spent} of {allowed} "
                    f"trained, {planned} planned for the stages left)"
                )
                plan.decisions["budget"] = record
                return None, record
            if planned > room:
                keep = _shrink([(st.trials, st.epochs) for st in later], room, policy.min_top)
                for st, n in zip(later, keep, strict=True):
                    if n < st.trials:
                        shrunk.append(f"stage {st.index + 2} {st.trials} -> {n} trials")
                        st.trials = n
            record["why"] = "within the epoch budget" + (
                f": {'; '.join(shrunk)} to pay for it" if shrunk else ""
            )
            if trials < stage.trials:
                record["why"] += f"; the added stage has {trials} of {stage.trials} trials"
    else:
        record["why"] = "within the epoch budget"
    if "epoch_budget" not in study.spec:  # the plan as written, before any stage is added
        study.spec = {**study.spec, "epoch_budget": budget}
    for row in reversed(later):  # from the last, so (study, index) stays unique at each step
        row.index += 1
        s.flush()
    added = StageRow(
        study_id=study.id,
        index=stage.index + 1,
        trials=trials,
        epochs=epochs,
        space={},
        state=StageState.WAITING.value,
        decisions={},
    )
    s.add(added)
    spec = dict(study.spec)
    shapes = [dict(st) for st in spec["stages"]]
    for row in later:  # the spec's stages mirror the rows (a shrunk stage included)
        if row.index < len(shapes) + 1:
            shapes[row.index - 1]["trials"] = row.trials
    shapes.insert(stage.index + 1, {"trials": trials, "epochs": epochs})
    spec["stages"] = shapes
    study.spec = spec  # a new value, so the JSON column is written
    s.flush()
    walking = [f.message for f in plan.flags if f.walk]
    plan.decisions["added_stage"] = {
        "index": added.index,
        "why": "the ranges walked: " + "; ".join(walking),
        "budget": record,
    }
    log.info(
        "study %s: stage %d added after stage %d", study.name, added.index + 1, stage.index + 1
    )
    return added, record


def extend(s: Session, study: StudyRow, added: list[tuple[int, int]]) -> list[StageRow]:
    """Append stages of (trials, epochs) to a study. A completed study runs
    again: its first new stage opens at once, narrowed from its last finished stage by the
    usual rules (border flags included); a running one reaches them in turn.

    Raises:
        ConflictError: for a stopped study, or past `MAX_STAGES` stages.
    """
    if study.state == StudyState.STOPPED.value:
        raise ConflictError(f"study {study.id} is stopped; resume it before extending it")
    stages = list(s.scalars(select(StageRow).where(StageRow.study_id == study.id)))
    if len(stages) + len(added) > MAX_STAGES:
        raise ConflictError(
            f"study {study.id} has {len(stages)} stages; {len(added)} more would pass the "
            f"limit of {MAX_STAGES}"
        )
    last = max(st.index for st in stages)
    rows = [
        StageRow(
            study_id=study.id,
            index=last + 1 + i,
            trials=trials,
            epochs=epochs,
            space={},
            state=StageState.WAITING.value,
            decisions={},
        )
        for i, (trials, epochs) in enumerate(added)
    ]
    s.add_all(rows)
    spec = dict(study.spec)
    spec["stages"] = [*spec["stages"], *({"trials": t, "epochs": e} for t, e in added)]
    if "epoch_budget" in spec:  # stages a person appends grow the stated budget
        spec["epoch_budget"] = int(spec["epoch_budget"]) + sum(t * e for t, e in added)
    study.spec = spec  # a new value, so the JSON column is written
    s.flush()
    if study.state == StudyState.COMPLETED.value:
        study.state, study.finished_at = StudyState.RUNNING.value, None
        advance(s, study)
    return rows


# -- stop rules ------------------------------------------------------------


def _rules(study: StudyRow) -> dict[str, Any]:
    return dict(study.spec.get("stop") or {})


def end_study(s: Session, study: StudyRow, reason: str) -> None:
    """A stop rule ends the study: completed, with why; its open trials stop."""
    now = utcnow()
    for stage in s.scalars(
        select(StageRow).where(
            StageRow.study_id == study.id, StageRow.state == StageState.RUNNING.value
        )
    ):
        stage.state = StageState.DONE.value
    for trial in s.scalars(
        select(TrialRow).where(TrialRow.study_id == study.id, TrialRow.state.in_(OPEN_STATES))
    ):
        trial.state, trial.error, trial.finished_at = TrialState.STOPPED.value, reason, now
        release_worker(s, trial)
    complete(study)
    study.stop_reason = reason
    log.info("study %s ended by its stop rule: %s", study.name, reason)


def target_reached(study: StudyRow, score: float, trial: TrialRow, epoch: int) -> str | None:
    """The reason to end the study when `score` reaches the `target` stop rule."""
    target = _rules(study).get("target")
    if target is None:
        return None
    reached = study.objective.reached(score, target)
    if not reached:
        return None
    sign = study.objective.comparison
    return (
        f"target reached: {study.metric} {score:.4g} {sign} {target:g} "
        f"(trial {trial.number}, epoch {epoch})"
    )


def _budget_spent(s: Session, study: StudyRow) -> str | None:
    """`max_minutes` passed, or `max_trials` trials made and none still open."""
    rules = _rules(study)
    minutes = rules.get("max_minutes")
    if minutes is not None:
        created = study.created_at  # SQLite hands it back naive: it is UTC
        created = created if created.tzinfo is not None else created.replace(tzinfo=dt.UTC)
        spent = (utcnow() - created).total_seconds() / 60
        if spent >= minutes:
            return f"time budget spent: {spent:.1f} of {minutes:g} minutes"
    cap = rules.get("max_trials")
    if cap is not None and study.next_trial_number >= cap:
        busy = s.scalar(
            select(func.count())
            .select_from(TrialRow)
            .where(TrialRow.study_id == study.id, TrialRow.state.in_(OPEN_STATES))
        )
        if not busy:
            return f"trial budget spent: {study.next_trial_number} of {cap} trials"
    return None


def _no_progress(s: Session, study: StudyRow) -> str | None:
    """`patience_stages` closed stages in a row whose best did not beat the best before."""
    patience = _rules(study).get("patience_stages")
    if patience is None:
        return None
    best = study.objective.best_of(TrialRow.best_score)
    rows = s.execute(
        select(StageRow.index, best)
        .join(TrialRow, TrialRow.stage_id == StageRow.id)
        .where(StageRow.study_id == study.id, StageRow.state == StageState.DONE.value)
        .group_by(StageRow.index)
        .order_by(StageRow.index)
    ).all()
    scores = [score for _, score in rows if score is not None]
    if len(scores) <= patience:
        return None
    before = study.objective.best(scores[:-patience])
    recent = study.objective.best(scores[-patience:])
    improved = study.objective.better(recent, before)
    if improved:
        return None
    return (
        f"no progress: the best {study.metric} of the last {patience} stage(s), {recent:.4g}, "
        f"does not beat {before:.4g} from before them"
    )
