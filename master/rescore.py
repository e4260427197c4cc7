"""Re-scoring the top of a stage on more seeds (`rescore: {top, seeds, after}`).

On a small validation set one seed's luck can rank a worse configuration first, and
selection is then capped by noise. So when a stage's trials have all finished, and before
it closes, the stage's `top` configurations (by best score, each configuration once) run
`seeds - 1` more times, each re-run a new trial of the stage (`origin: rescore`,
`parent_id` the trial it re-runs, its own trial number and so its own seed), run to the
end (early stopping spares them). Once they have finished, every run of a configuration
gets the mean of their best scores as its selection score, which is what ranks trials
(`context.ranked`): the stage's narrowing, the study's best, the ranked table and the
ensembles all select by the mean. A re-run that diverged counts as the stage's worst
score (a configuration that diverges on some seeds is not a safe choice); one that
failed or stopped unscored is left out of the mean. The stage's decisions record what
was re-scored (`rescore`: each configuration's runs, scores and mean).

`after: every_stage` (the default) re-scores every stage; `last_stage` only the study's
last, for its final selection. The stage controller calls `hold` once a stage's trials
are done, claims take `next_rerun`, and `settle` sets the means before the stage closes.
"""

from __future__ import annotations

import json
import logging
import statistics
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gridless.common.db import StageRow, StudyRow, TrialRow
from gridless.common.states import TrialState
from gridless.master.context import ranked

__all__ = ["ORIGIN", "hold", "next_rerun", "settle"]

log = logging.getLogger(__name__)

ORIGIN = "rescore"


def _policy(study: StudyRow, stage: StageRow, s: Session) -> dict[str, Any] | None:
    """The study's `rescore` settings when they apply to `stage`, else None."""
    policy = study.spec.get("rescore")
    if not policy:
        return None
    if policy.get("after") == "last_stage":
        last = s.scalar(select(func.max(StageRow.index)).where(StageRow.study_id == study.id))
        if stage.index != last:
            return None
    return dict(policy)


def _key(params: dict[str, Any] | None) -> str:
    return json.dumps(params or {}, sort_keys=True)


def hold(s: Session, study: StudyRow, stage: StageRow) -> bool:
    """Whether the stage, whose trials have all finished, stays open for re-runs: True
    when this call queued them (the stage grows by their number and claims hand them
    out). False when re-scoring does not apply or its re-runs are done."""
    policy = _policy(study, stage, s)
    if policy is None or "rescore" in (stage.decisions or {}):
        return False
    seen: set[str] = set()
    top: list[TrialRow] = []
    for trial in s.scalars(
        ranked(study).where(
            TrialRow.stage_id == stage.id,
            TrialRow.best_score.is_not(None),
            TrialRow.origin.is_distinct_from(ORIGIN),
        )
    ):
        if not trial.params or _key(trial.params) in seen:
            continue  # the same configuration twice (enqueued): re-run it once
        seen.add(_key(trial.params))
        top.append(trial)
        if len(top) == int(policy["top"]):
            break
    pending = [
        {"of": t.id, "params": dict(t.params or {})}
        for t in top
        for _ in range(int(policy["seeds"]) - 1)
    ]
    stage.decisions = {
        **(stage.decisions or {}),
        "rescore": {"top": [t.number for t in top], "pending": pending},
    }
    stage.trials += len(pending)
    if pending:
        log.info(
            "stage %d: re-running its top %d configurations on %d more seeds each",
            stage.index + 1,
            len(top),
            int(policy["seeds"]) - 1,
        )
    return bool(pending)


def next_rerun(stage: StageRow) -> tuple[dict[str, Any], int] | None:
    """The next queued re-run of `stage`, (parameters, id of the trial it re-runs), taken
    off the queue; None when none waits."""
    record = dict((stage.decisions or {}).get("rescore") or {})
    pending = list(record.get("pending") or [])
    if not pending:
        return None
    first, record["pending"] = pending[0], pending[1:]
    stage.decisions = {**stage.decisions, "rescore": record}  # a new value: written
    return dict(first["params"]), int(first["of"])


def settle(s: Session, study: StudyRow, stage: StageRow) -> dict[str, Any] | None:
    """Give every run of each re-scored configuration the mean of their scores as its
    selection score; the record for the stage's decisions (None: nothing re-scored)."""
    record = (stage.decisions or {}).get("rescore")
    if record is None:
        return None
    originals = list(
        s.scalars(
            select(TrialRow).where(
                TrialRow.stage_id == stage.id, TrialRow.number.in_(record.get("top") or [])
            )
        )
    )
    scores = [
        v
        for v in s.scalars(
            select(TrialRow.best_score).where(
                TrialRow.stage_id == stage.id, TrialRow.best_score.is_not(None)
            )
        )
        if v is not None
    ]
    worst = study.objective.worst(scores) if scores else None
    configurations = []
    for original in sorted(originals, key=lambda t: record["top"].index(t.number)):
        reruns = list(
            s.scalars(
                select(TrialRow)
                .where(TrialRow.parent_id == original.id, TrialRow.origin == ORIGIN)
                .order_by(TrialRow.number)
            )
        )
        runs = [original, *reruns]
        counted = [_counted(t, worst) for t in runs]
        values = [v for v in counted if v is not None]
        mean = statistics.fmean(values) if values else None
        for run in runs:
            run.selection_score = mean
        configurations.append(
            {
                "trial": original.number,
                "runs": [t.number for t in runs],
                "scores": counted,
                "mean": mean,
            }
        )
    return {"top": record.get("top") or [], "configurations": configurations}


def _counted(trial: TrialRow, worst: float | None) -> float | None:
    """What one run adds to its configuration's mean."""
    if trial.state == TrialState.DIVERGED.value:
        return worst
    return trial.best_score
