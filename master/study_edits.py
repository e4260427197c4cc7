"""Studies that live on: stages added to a study, and the next stage's ranges
set by a person (a part of `StudyService`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from gridless.common.db import StageRow, StudyRow, TrialRow, session_scope
from gridless.common.errors import ConflictError, SpecError
from gridless.common.space import parse_space, space_to_json
from gridless.common.spec import StageSpec, StudySpec, check_configs
from gridless.common.states import StageState, StudyState
from gridless.master.context import MasterContext, load_study

__all__ = ["StudyEdits", "stage_summaries", "warm_ranges"]


class StudyEdits:
    """The extension and space-edit half of `StudyService`."""

    context: MasterContext
    sessions: sessionmaker[Session]

    def extend_study(
        self, study_id: int, added: list[StageSpec], *, add_trials: int = 0
    ) -> StudyRow:
        """Add trials to the running stage and append stages; a completed study runs
        again from a narrowed first new stage.

        Raises:
            NotFoundError, ConflictError: no such study; a stopped one; trials for a
                study with no running stage.
        """
        from gridless.master.stages import extend, running_stage

        with self.context.write_lock, session_scope(self.sessions) as s:
            study = load_study(s, study_id)
            if add_trials:
                stage = running_stage(s, study)
                if stage is None or study.state == StudyState.STOPPED.value:
                    raise ConflictError(
                        f"study {study_id} has no running stage to add trials to: append "
                        "a stage instead"
                    )
                stage.trials += add_trials
                study.spec = {
                    **study.spec,
                    "stages": [
                        {**st, "trials": st["trials"] + add_trials} if i == stage.index else st
                        for i, st in enumerate(study.spec["stages"])
                    ],
                }
                if "epoch_budget" in study.spec:  # trials a person adds grow the budget
                    budget = int(study.spec["epoch_budget"]) + add_trials * stage.epochs
                    study.spec = {**study.spec, "epoch_budget": budget}
            if added:
                extend(s, study, [(st.trials, st.epochs) for st in added])
            return study

    def edit_space(self, study_id: int, raw: dict[str, Any]) -> StudyRow:
        """Set the ranges of the study's next stage: the running stage's, while
        it has no trial yet, else the stage after it, which then skips the narrowing.

        Raises:
            SpecError: a space that does not parse, or names other parameters.
            ConflictError: a stopped study.
        """
        space = parse_space(raw)
        with self.context.write_lock, session_scope(self.sessions) as s:
            study = load_study(s, study_id)
            if study.state == StudyState.STOPPED.value:
                raise ConflictError(f"study {study_id} is stopped; resume it before editing it")
            searched = set(study.spec["space"])
            if set(space) != searched:
                odd = sorted(set(space) ^ searched)
                raise SpecError(
                    f"space.{odd[0]}: the edit must give the study's parameters "
                    f"({', '.join(sorted(searched))}), no more and no fewer"
                )
            stage = s.scalar(
                select(StageRow).where(
                    StageRow.study_id == study_id, StageRow.state == StageState.RUNNING.value
                )
            )
            started = stage is not None and (
                s.scalar(
                    select(func.count()).select_from(TrialRow).where(TrialRow.stage_id == stage.id)
                )
                or 0
            )
            if stage is not None and not started:
                stage.space = space_to_json(space)
            else:
                study.spec = {**study.spec, "next_space": space_to_json(space)}
            return study

    def compare_studies(self, study_ids: list[int]) -> list[dict[str, Any]]:
        """Studies of this database side by side: each with its metric and its stages'
        ranges, best and score distribution.

        Raises:
            NotFoundError: for an id with no study.
        """
        with session_scope(self.sessions) as s:
            studies = [load_study(s, i) for i in study_ids]
            return [
                {
                    "id": st.id,
                    "name": st.name,
                    "metric": st.metric,
                    "maximize": st.maximize,
                    "state": st.state,
                    "stages": stage_summaries(s, st),
                }
                for st in studies
            ]

    def enqueue_trial(self, study_id: int, params: dict[str, Any]) -> int:
        """Queue a configuration: the next trial of the running stage runs it; how many
        wait now.

        Raises:
            SpecError: unknown or missing parameters, a value of the wrong kind.
            ConflictError: a study that hands out no more trials (completed, stopped).
        """
        with self.context.write_lock, session_scope(self.sessions) as s:
            study = load_study(s, study_id)
            if study.state not in (StudyState.RUNNING.value, StudyState.PAUSED.value):
                raise ConflictError(
                    f"study {study_id} is {study.state}: extend it (POST .../stages) to run "
                    "more trials"
                )
            check_configs(parse_space(study.spec["space"]), [params], where="params")
            queued = [*(study.spec.get("queued") or []), dict(params)]
            study.spec = {**study.spec, "queued": queued}
            return len(queued)


def warm_ranges(s: Session, spec: StudySpec, own: dict[str, Any]) -> dict[str, Any]:
    """Stage 1's ranges of a warm-started study: the old study's last ranges, or `own`.

    Raises:
        SpecError: no such old study, another model, or other parameters.
    """
    warm = spec.warm_start
    assert warm is not None
    if warm.snapshot is not None:
        snap = warm.snapshot
        old_name, where = "the old run's study", "warm_start.run"
        model, metric, maximize = snap.model, snap.metric, snap.maximize
        searched, last = set(snap.ranges), snap.ranges
    elif warm.run is not None:
        raise SpecError(
            "warm_start.run: a path on the machine that runs gridless run or submit, which "
            "reads it; over the API, warm-start from study: ID of this database"
        )
    else:
        assert warm.study is not None
        old = s.get(StudyRow, warm.study)
        if old is None:
            raise SpecError(f"warm_start.study: no study {warm.study} in this database")
        old_name, where = f"study {warm.study}", "warm_start.study"
        model = old.spec.get("train") or old.spec["model"]
        metric, maximize, searched = old.metric, old.maximize, set(old.spec["space"])
        spaces = s.scalars(
            select(StageRow.space).where(StageRow.study_id == old.id).order_by(StageRow.index)
        )
        opened = [space for space in spaces if space]  # stages never opened have none
        last = opened[-1] if opened else own
    mine = spec.train or spec.model
    if model != mine:
        raise SpecError(
            f"{where}: {old_name} trains {model}, this spec {mine}: a warm start needs the "
            "same model"
        )
    if metric != spec.objective.name or maximize != spec.maximize:
        raise SpecError(
            f"{where}: {old_name} optimized {metric}, this spec {spec.objective.name}: "
            "their scores do not compare"
        )
    if searched != set(spec.space):
        raise SpecError(
            f"{where}: {old_name} searched {', '.join(sorted(searched))}; this spec "
            f"searches {', '.join(sorted(spec.space))}"
        )
    return own if warm.ranges == "spec" else dict(last)


def stage_summaries(s: Session, study: StudyRow) -> list[dict[str, Any]]:
    """Per stage: its ranges, state, and its trials' score distribution (count, min,
    quartiles, max) and best, for putting stages and studies side by side."""
    stages = list(
        s.scalars(select(StageRow).where(StageRow.study_id == study.id).order_by(StageRow.index))
    )
    out = []
    for stage in stages:
        scores = sorted(
            v
            for v in s.scalars(
                select(TrialRow.best_score).where(
                    TrialRow.stage_id == stage.id, TrialRow.best_score.is_not(None)
                )
            )
            if v is not None
        )
        summary: dict[str, Any] = {
            "stage": stage.index + 1,
            "state": stage.state,
            "trials": stage.trials,
            "epochs": stage.epochs,
            "space": stage.space,
            "scored": len(scores),
        }
        if scores:
            last = len(scores) - 1
            summary["scores"] = {
                "min": scores[0],
                "p25": scores[round(0.25 * last)],
                "median": scores[round(0.5 * last)],
                "p75": scores[round(0.75 * last)],
                "max": scores[-1],
            }
            summary["best"] = study.objective.best(scores)
        out.append(summary)
    return out
