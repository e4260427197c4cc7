"""Studies: create, read, pause/resume/stop, stages, flags, warnings, and trial lists."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request, status
from fastapi.responses import PlainTextResponse, Response, StreamingResponse

from gridless.common.bounds import Offset
from gridless.common.db import session_scope
from gridless.common.errors import ConflictError, SpecError
from gridless.common.spec import parse_spec
from gridless.common.states import TrialState
from gridless.master.deps import ServiceDep, StudyDep, StudyTrialDep
from gridless.master.export import ExportFormat, export_lines, media_type
from gridless.master.pareto import compared_trials, study_front, study_objectives
from gridless.master.routes.trials import trial_detail, trial_log
from gridless.master.schemas import (
    BorderFlagPublic,
    FlagsPublic,
    ImportancePublic,
    ObjectivePublic,
    ParetoPointsPublic,
    ParetoPublic,
    ParetoTrialPublic,
    SpaceEdit,
    StagePublic,
    StagesAdd,
    StudiesCompared,
    StudiesPublic,
    StudyDetailPublic,
    StudyPointsPublic,
    StudyPublic,
    TrialDetailPublic,
    TrialEnqueue,
    TrialQueued,
    TrialsPublic,
    TrialSummaryPublic,
    TrialWarningsPublic,
    WarningsPublic,
)
from gridless.master.services import ParamRange, StudyService

router = APIRouter(prefix="/studies", tags=["studies"])

Limit = Annotated[int, Query(ge=1, le=1000, description="page size")]


def raised_flags(service: StudyService, study_id: int) -> list[BorderFlagPublic]:
    return [BorderFlagPublic.model_validate(f.to_json()) for f in service.raised_flags(study_id)]


@router.get("")
def list_studies(service: ServiceDep, limit: Limit = 100, offset: Offset = 0) -> StudiesPublic:
    """List studies, oldest first."""
    rows, count = service.list_studies(limit=limit, offset=offset)
    return StudiesPublic(data=[StudyPublic.model_validate(r) for r in rows], count=count)


@router.post("", status_code=status.HTTP_201_CREATED)
def create_study(
    service: ServiceDep, spec: Annotated[dict[str, Any], Body(description="a study spec")]
) -> StudyPublic:
    """Create a study from a spec (the YAML file's content as JSON); workers pick it up."""
    return StudyPublic.model_validate(service.create_study(parse_spec(spec)))


def _detail(service: ServiceDep, study: Any) -> StudyDetailPublic:
    progress = service.progress(study.id)
    return StudyDetailPublic(
        **StudyPublic.model_validate(study).model_dump(),
        stages=[StagePublic.model_validate(s) for s in service.stages(study.id)],
        finished_trials=progress.finished,
        total_trials=progress.total,
        best_score=progress.best,
        border_flags=raised_flags(service, study.id),
        warning_counts=service.warning_counts(study.id),
        ensembles_built=service.has_ensembles(study.id),
        metric_names=service.metric_names(study.id),
        **pareto_fields(service, study),
    )


@router.get("/compare")
def compare_studies(
    service: ServiceDep,
    ids: Annotated[str, Query(max_length=200, description="study ids, comma-separated")],
) -> StudiesCompared:
    """Studies (or one study's stages) side by side: per stage its ranges, best and score
    distribution (count, min, quartiles, max)."""
    try:
        wanted = [int(part) for part in ids.split(",") if part.strip()]
    except ValueError:
        raise SpecError(f"ids: expected study ids separated by commas, but got {ids!r}") from None
    if not 1 <= len(wanted) <= 10 or any(not 1 <= i < 2**31 for i in wanted):
        raise SpecError(f"ids: give 1 to 10 study ids, each >= 1, but got {ids!r}")
    return StudiesCompared(data=service.compare_studies(wanted))


@router.get("/{study_id}")
def read_study(study: StudyDep, service: ServiceDep) -> StudyDetailPublic:
    """One study with its stages, progress, best score, border flags and warning counts."""
    return _detail(service, study)


@router.post("/{study_id}/pause")
def pause_study(study: StudyDep, service: ServiceDep) -> StudyDetailPublic:
    """Hand out no new trials; running trials finish."""
    return _detail(service, service.set_state(study.id, "pause"))


@router.post("/{study_id}/resume")
def resume_study(study: StudyDep, service: ServiceDep) -> StudyDetailPublic:
    """Hand out trials again after a pause."""
    return _detail(service, service.set_state(study.id, "resume"))


@router.post("/{study_id}/stop")
def stop_study(study: StudyDep, service: ServiceDep) -> StudyDetailPublic:
    """End the study: running trials stop at their next report or heartbeat."""
    return _detail(service, service.set_state(study.id, "stop"))


@router.post("/{study_id}/stages")
def add_stages(study: StudyDep, service: ServiceDep, body: StagesAdd) -> StudyDetailPublic:
    """Extend the study by further stages (a completed one runs again, its first new stage
    narrowed from its last finished stage, border flags included), or its running stage
    by `add_trials` trials."""
    return _detail(
        service, service.extend_study(study.id, body.stages, add_trials=body.add_trials)
    )


@router.patch("/{study_id}/space")
def edit_space(study: StudyDep, service: ServiceDep, body: SpaceEdit) -> StudyDetailPublic:
    """Set the next stage's ranges (validated like a spec): the running stage's while it
    has no trial, else the next stage's, instead of its narrowing."""
    return _detail(service, service.edit_space(study.id, body.space))


@router.get("/{study_id}/stages")
def list_stages(study: StudyDep, service: ServiceDep) -> list[StagePublic]:
    """The stages with their ranges and narrowing decisions (old range, new range, why)."""
    return [StagePublic.model_validate(s) for s in service.stages(study.id)]


@router.get("/{study_id}/flags")
def list_flags(study: StudyDep, service: ServiceDep) -> FlagsPublic:
    """Border flags: best values near an edge of their range, per stage."""
    flags = raised_flags(service, study.id)
    return FlagsPublic(data=flags, final=[f for f in flags if f.final])


@router.get("/{study_id}/warnings")
def list_warnings(
    study: StudyDep, service: ServiceDep, limit: Limit = 100, offset: Offset = 0
) -> WarningsPublic:
    """Babysitting warnings: counts per code, and the trials that raised any."""
    rows, _ = service.list_trials(study.id, limit=limit, offset=offset, sort="number")
    data = [
        TrialWarningsPublic(trial_id=t.id, number=t.number, warnings=t.warnings or [])
        for t in rows
        if t.warnings
    ]
    return WarningsPublic(counts=service.warning_counts(study.id), data=data)


@router.post("/{study_id}/trials", status_code=status.HTTP_201_CREATED)
def enqueue_trial(study: StudyDep, service: ServiceDep, body: TrialEnqueue) -> TrialQueued:
    """Queue a configuration (a value for every searched parameter; outside the ranges is
    allowed): the running stage's next trial runs it, marked enqueued."""
    return TrialQueued(study_id=study.id, queued=service.enqueue_trial(study.id, body.params))


@router.get(
    "/{study_id}/trials",
    response_model=TrialsPublic,
    responses={
        200: {
            "content": {"text/csv": {}},
            "description": "a page of trials; with `format`, every matching trial as a file",
        }
    },
)
def list_trials(
    study: StudyDep,
    service: ServiceDep,
    limit: Limit = 50,
    offset: Offset = 0,
    state: TrialState | None = None,
    stage: Annotated[int | None, Query(ge=1, le=1000, description="1-based stage")] = None,
    param: Annotated[
        list[str] | None, Query(description="name:low:high, repeatable; a bound may be empty")
    ] = None,
    sort: Annotated[
        str | None,
        Query(
            max_length=100, description="best_score, number, ..., params.<name>; -name reverses"
        ),
    ] = None,
    export: Annotated[
        ExportFormat | None,
        Query(
            alias="format",
            description="csv or json: every trial that passes the filters (no page), "
            "streamed as an attachment",
        ),
    ] = None,
) -> TrialsPublic | Response:
    """A page of the study's trials; by default ranked by its metric, best first. With
    `format=csv` (or `json`), every trial that passes the filters, in that order, as a
    file: number, stage, state, origin, best_score, best_epoch, params.<name>,
    metrics.<name> (the last epoch's) and warnings."""
    ranges = [ParamRange.parse(p) for p in param or []]
    if export is not None:
        _, ids = service.export_ids(
            study.id,
            state=state.value if state else None,
            stage=stage,
            params=ranges,
            sort=sort,
        )
        lines = export_lines(service.sessions, study, ids, service.metric_names(study.id), export)
        return StreamingResponse(
            lines,
            media_type=media_type(export),
            headers={
                "Content-Disposition": f'attachment; filename="{study.name}-trials.{export}"'
            },
        )
    rows, count = service.list_trials(
        study.id,
        limit=limit,
        offset=offset,
        state=state.value if state else None,
        stage=stage,
        params=ranges,
        sort=sort,
    )
    stages = service.stage_index(study.id)
    metrics = service.last_metrics([row.id for row in rows])
    ranked = sort is None and state is None and stage is None and not ranges
    data = []
    for i, row in enumerate(rows):
        item = TrialSummaryPublic.model_validate(row)
        item.stage = stages.get(row.stage_id)
        item.metrics = metrics.get(row.id, {})
        if ranked and row.best_score is not None:
            item.rank = offset + i + 1
        data.append(item)
    return TrialsPublic(data=data, count=count)


@router.get("/{study_id}/pareto")
def read_pareto(study: StudyDep, service: ServiceDep) -> ParetoPublic:
    """A multi-objective study's Pareto front: its finished trials that no other finished
    trial matches or beats on every objective (each trial's values at its best epoch by
    the first objective), best first by the first objective; 409 for a study with one
    objective."""
    objectives = study_objectives(study)
    if len(objectives) < 2:
        raise ConflictError(
            f"study {study.id} has one objective ({study.metric}); a Pareto front needs a "
            "list of metrics, e.g. metric: [{name: val_f1, mode: max}, {name: latency_ms, "
            "mode: min}]"
        )
    with session_scope(service.sessions) as s:
        front = study_front(s, study)
        compared = compared_trials(s, study)
        metrics = service.last_metrics([row.id for row, _ in front])
        stages = service.stage_index(study.id)
        data = []
        for row, values in front:
            item = ParetoTrialPublic.model_validate(
                {**TrialSummaryPublic.model_validate(row).model_dump(), "values": list(values)}
            )
            item.stage = stages.get(row.stage_id)
            item.metrics = metrics.get(row.id, {})
            data.append(item)
    return ParetoPublic(
        objectives=[ObjectivePublic(name=o.name, mode=o.mode) for o in objectives],
        data=data,
        count=len(data),
        compared=ParetoPointsPublic(
            number=[number for _, number, _ in compared],
            values=[list(values) for _, _, values in compared],
        ),
    )


def pareto_fields(service: StudyService, study: Any) -> dict[str, Any]:
    """The study detail's `objectives` and, for several, `pareto_front` (trial numbers)."""
    objectives = study_objectives(study)
    fields: dict[str, Any] = {
        "objectives": [ObjectivePublic(name=o.name, mode=o.mode) for o in objectives]
    }
    if len(objectives) > 1:
        with session_scope(service.sessions) as s:
            fields["pareto_front"] = [row.number for row, _ in study_front(s, study)]
    return fields


@router.get("/{study_id}/points")
def read_points(study: StudyDep, service: ServiceDep) -> StudyPointsPublic:
    """Every trial of the study in columns for plots (aligned arrays): finished trials in
    the order they finished (`order` 1..k), then the unfinished by number; failed and
    diverged trials with their state and a null score."""
    return StudyPointsPublic.model_validate(service.points(study.id))


@router.get("/{study_id}/importance")
def read_importance(study: StudyDep, service: ServiceDep) -> ImportancePublic:
    """How much each parameter decides whether a trial reaches the top 10% (PED-ANOVA),
    for the whole study and per stage; `note` says why a set has none, or how it was
    sampled (at most 2,000 trials a set)."""
    return ImportancePublic.model_validate(service.importance.of(study))


@router.get("/{study_id}/trials/{number}")
def read_study_trial(trial: StudyTrialDep, service: ServiceDep) -> TrialDetailPublic:
    """Trial `number` of the study (the number the CLI and the dashboard show), with its
    per-epoch metrics and live checkpoints."""
    return trial_detail(trial, service)


@router.get("/{study_id}/trials/{number}/log", response_class=PlainTextResponse)
def read_study_trial_log(trial: StudyTrialDep, service: ServiceDep, request: Request) -> str:
    """What trial `number` of the study printed (stdout and stderr, every attempt)."""
    return trial_log(trial, service, request)
