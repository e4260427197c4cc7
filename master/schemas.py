"""API schemas (separate from the ORM rows)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gridless.common.spec import TARGET_PATTERN, StageSpec
from gridless.master.notify import redact_url

__all__ = [
    "CheckpointPublic",
    "EpochMetricPublic",
    "FlagsPublic",
    "ImportancePublic",
    "ObjectivePublic",
    "ParetoPointsPublic",
    "ParetoPublic",
    "ParetoTrialPublic",
    "SpaceEdit",
    "StagePublic",
    "StagesAdd",
    "StudiesCompared",
    "StudiesPublic",
    "StudyDetailPublic",
    "StudyPointsPublic",
    "StudyPublic",
    "TrialDetailPublic",
    "TrialEnqueue",
    "TrialPublic",
    "TrialQueued",
    "TrialSummaryPublic",
    "TrialsPublic",
    "WarningsPublic",
    "WorkerPublic",
    "WorkersLaunch",
    "WorkersPublic",
]


class _Public(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class StagePublic(_Public):
    index: int
    trials: int
    epochs: int
    state: str
    space: dict[str, Any]
    decisions: dict[str, Any]


class StudyPublic(_Public):
    id: int
    name: str
    metric: str
    maximize: bool
    seed: int
    state: str
    # Why gridless paused the study (the circuit breaker), when it did.
    state_reason: str | None = None
    stop_reason: str | None = None  # why a `stop:` rule ended it
    created_at: dt.datetime
    finished_at: dt.datetime | None
    spec: dict[str, Any]

    @field_validator("spec")
    @classmethod
    def _no_webhook_secret(cls, spec: dict[str, Any]) -> dict[str, Any]:
        """Reads are open: a webhook URL's path (its secret, for Slack's) is not shown."""
        notify = spec.get("notify")
        if isinstance(notify, dict) and isinstance(notify.get("url"), str):
            spec = {**spec, "notify": {**notify, "url": redact_url(notify["url"])}}
        return _without_builtin_defaults(spec)


def _without_builtin_defaults(spec: dict[str, Any]) -> dict[str, Any]:
    """A `train:` study trains the user's function: the built-in model and dataset the
    stored spec carries as defaults are not its own, so they are not shown."""
    if not spec.get("train"):
        return spec
    hidden = {"model": "numpy.mlp", "dataset": "digits"}
    return {k: v for k, v in spec.items() if k not in hidden or v != hidden[k]}


class BorderFlagPublic(BaseModel):
    """A best value near an edge of its range, or evidence that the range is wrong,
    raised after `stage` (`final`: after the last one, so no stage answered it)."""

    param: str
    value: float
    edge: Literal["lower", "upper"]
    low: float
    high: float
    evidence: str | None = None
    walk: bool = False
    rho: float | None = None
    trials: int = 0
    on_border: bool = True
    held: str | None = None
    note: str | None = None
    beyond_range: bool = Field(
        default=False, description="the next range goes past the range the spec wrote"
    )
    message: str
    stage: int
    final: bool


class ObjectivePublic(BaseModel):
    """One objective of a study: a reported metric and which way is better."""

    name: str
    mode: Literal["min", "max"]


class StudyDetailPublic(StudyPublic):
    stages: list[StagePublic]
    finished_trials: int
    total_trials: int
    best_score: float | None
    border_flags: list[BorderFlagPublic]
    warning_counts: dict[str, int]
    ensembles_built: bool
    metric_names: list[str] = Field(
        default_factory=list, description="every metric name the trials reported"
    )
    objectives: list[ObjectivePublic] = Field(
        default_factory=list,
        description="the study's objectives, the primary (ranking) one first; two or more "
        "for a multi-objective study",
    )
    pareto_front: list[int] | None = Field(
        default=None,
        description="a multi-objective study's Pareto front: trial numbers, best first by "
        "the first objective (GET /studies/{id}/pareto has the trials); null for one "
        "objective",
    )


class StudiesPublic(BaseModel):
    data: list[StudyPublic]
    count: int


class TrialPublic(_Public):
    id: int
    study_id: int
    number: int
    parent_id: int | None = None
    stage: int | None = None  # 1-based
    rank: int | None = None
    state: str
    attempt: int
    epochs: int
    last_epoch: int
    params: dict[str, Any] | None
    origin: str | None = None  # "enqueued": one the spec listed; "rescore": a top re-run
    best_score: float | None
    # What ranks the trial: best_score, or its configuration's mean over seeds once
    # re-scored (rescore:).
    selection_score: float | None = None
    best_epoch: int | None
    best_metrics: dict[str, float | None] | None = None  # every metric at the best epoch
    worker_id: str | None
    error: str | None
    warnings: list[dict[str, Any]] | None
    created_at: dt.datetime
    finished_at: dt.datetime | None


class TrialSummaryPublic(TrialPublic):
    """A trial in a list: with every metric of its last reported epoch."""

    metrics: dict[str, float | None] = Field(default_factory=dict)


class TrialsPublic(BaseModel):
    data: list[TrialSummaryPublic]
    count: int


class ParetoTrialPublic(TrialSummaryPublic):
    """A trial on the Pareto front, with its value of each objective."""

    values: list[float] = Field(
        description="each objective's value at the trial's best epoch, in `objectives` order"
    )


class ParetoPointsPublic(BaseModel):
    """Finished trials in columns: their numbers and objective values (aligned arrays)."""

    number: list[int]
    values: list[list[float]] = Field(description="per trial, in `objectives` order")


class ParetoPublic(BaseModel):
    """`GET /studies/{id}/pareto`: the finished trials no other finished trial beats on
    every objective, best first by the first objective."""

    objectives: list[ObjectivePublic]
    data: list[ParetoTrialPublic]
    count: int
    compared: ParetoPointsPublic = Field(
        description="every finished trial with a value of each objective, the front's "
        "among them: what the front was chosen from"
    )


ParamValue = float | int | str | bool | None


class StudyPointsPublic(BaseModel):
    """`GET /studies/{id}/points`: every trial in columns (aligned arrays), finished
    trials in the order they finished, then the unfinished by number."""

    count: int
    params: list[str]
    number: list[int]
    stage: list[int] = Field(description="1-based")
    state: list[str]
    origin: list[str | None]
    score: list[float | None] = Field(description="null for failed and diverged trials")
    order: list[int | None] = Field(description="finish order 1..k; null while unfinished")
    values: dict[str, list[ParamValue]]


class ImportanceSet(BaseModel):
    trials: int = Field(description="the scored trials it used")
    importances: dict[str, float] | None = Field(description="summing to 1; null: see note")


class StageImportance(BaseModel):
    stage: int = Field(description="1-based")
    trials: int = Field(description="the scored trials it used")
    importances: dict[str, float] | None = Field(description="summing to 1; null: see note")


class ImportancePublic(BaseModel):
    """`GET /studies/{id}/importance`: how much each parameter decides the score, for
    the whole study and per stage."""

    method: str
    study: ImportanceSet
    stages: list[StageImportance]
    note: str | None


class EpochMetricPublic(_Public):
    epoch: int
    attempt: int
    train_loss: float | None
    train_accuracy: float | None
    val_loss: float | None
    val_accuracy: float | None
    # Every number reported for the epoch by name, and the study's metric among them.
    metrics: dict[str, float | None] = Field(default_factory=dict)
    score: float | None = None
    seconds: float
    stats: dict[str, Any]

    @model_validator(mode="before")
    @classmethod
    def _named(cls, row: Any) -> Any:
        """Rows from before revision 0004 hold the four columns only."""
        if hasattr(row, "named_metrics"):
            return {
                **{k: getattr(row, k) for k in cls.model_fields if k != "metrics"},
                "metrics": row.named_metrics(),
            }
        return row


class CheckpointPublic(_Public):
    epoch: int
    attempt: int
    score: float
    path: str
    size: int
    sha256: str
    deleted_at: dt.datetime | None = None
    deleted_why: str | None = None


class StudyCheckpointPublic(BaseModel):
    path: str
    name: str
    trial_id: int
    trial_number: int
    epoch: int
    attempt: int
    score: float
    size: int
    sha256: str
    created_at: dt.datetime


class StudyCheckpointsPublic(BaseModel):
    data: list[StudyCheckpointPublic]
    count: int


class CheckpointMetaPublic(StudyCheckpointPublic):
    params: dict[str, Any] | None
    trial_state: str
    metrics: EpochMetricPublic | None
    file_meta: dict[str, Any] | None


class CheckpointResume(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(min_length=1, max_length=512)
    epochs: int = Field(default=5, ge=1, le=10_000)


class StagesAdd(BaseModel):
    """Stages to append to a study, or trials to add to its running stage
    (`POST /studies/{id}/stages`)."""

    model_config = ConfigDict(extra="forbid")

    stages: list[StageSpec] = Field(default_factory=list, max_length=20)
    add_trials: int = Field(default=0, ge=0, le=100_000, description="to the running stage")

    @model_validator(mode="after")
    def _something(self) -> StagesAdd:
        if not self.stages and not self.add_trials:
            raise ValueError("give stages to append, or add_trials for the running stage")
        return self


class TrialEnqueue(BaseModel):
    """A configuration to run next (`POST /studies/{id}/trials`)."""

    model_config = ConfigDict(extra="forbid")

    params: dict[str, float | int | str | bool] = Field(min_length=1, max_length=200)


class TrialQueued(BaseModel):
    study_id: int
    queued: int  # configurations waiting, this one included


class StudiesCompared(BaseModel):
    """`GET /studies/compare`: each study with its stages' ranges, best and scores."""

    data: list[dict[str, Any]]


class SpaceEdit(BaseModel):
    """The next stage's ranges (`PATCH /studies/{id}/space`), in the spec's form."""

    model_config = ConfigDict(extra="forbid")

    space: dict[str, Any] = Field(min_length=1, max_length=200)


class EnsembleBuild(BaseModel):
    model_config = ConfigDict(extra="forbid")

    k: int = Field(default=5, ge=1, le=20, description="members per ensemble")
    retrain: bool = Field(default=True, description="also retrain the best configuration")
    predict: str | None = Field(
        default=None,
        max_length=200,
        pattern=TARGET_PATTERN,
        description="a train: study's predict hook, module:function (default: the spec's)",
    )
    evaluate: str | None = Field(
        default=None,
        max_length=200,
        pattern=TARGET_PATTERN,
        description="a train: study's evaluate hook, module:function (default: the spec's)",
    )


class EnsemblesPublic(BaseModel):
    study_id: int
    created_at: dt.datetime
    rows: list[dict[str, Any]]
    test_examples: int
    val_examples: int
    notes: list[str]
    metric: str = "accuracy"  # what val_score and test_score are
    maximize: bool = True


class TrialDetailPublic(TrialPublic):
    metrics: list[EpochMetricPublic]
    checkpoints: list[CheckpointPublic]


class WorkerPublic(_Public):
    id: str
    state: str
    trial_id: int | None
    trials_run: int
    started_at: dt.datetime
    heartbeat_at: dt.datetime | None


class WorkersPublic(BaseModel):
    data: list[WorkerPublic]
    count: int
    running: list[str]


class WorkersLaunch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    count: int = Field(default=1, ge=1, le=256)


class WorkersLaunched(BaseModel):
    started: list[str]


class WorkersKilled(BaseModel):
    killed: list[str]


class FlagsPublic(BaseModel):
    data: list[BorderFlagPublic]
    final: list[BorderFlagPublic]


class TrialWarningsPublic(BaseModel):
    trial_id: int
    number: int
    warnings: list[dict[str, Any]]


class WarningsPublic(BaseModel):
    counts: dict[str, int]
    data: list[TrialWarningsPublic]


class EnsembleJobPublic(BaseModel):
    """An ensemble build run as a job on a worker: poll `url` until `state` is
    done (its `report` is then the study's latest ensembles) or failed (`error` says why)."""

    id: int
    study_id: int
    state: str  # queued | running | done | failed
    url: str  # where to poll this job
    options: dict[str, Any]  # the request: k, retrain, predict, evaluate
    error: str | None
    host: str | None  # where the job ran: the worker's host name and process id
    pid: int | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    report: EnsemblesPublic | None  # once done


class EnsembleJobsPublic(BaseModel):
    data: list[EnsembleJobPublic]
    count: int
