"""Messages between workers and the master (HTTP JSON); both sides import these.

Non-finite numbers never travel as bare JSON tokens: a worker sends `null` for a NaN
or infinite loss and sets `diverged` (DESIGN.md, protocol rules).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gridless.common.bounds import Count, Id, Number
from gridless.common.jsonsafe import check_strict_json
from gridless.common.metric import check_metric_name, merged_metrics

__all__ = [
    "Assignment",
    "BatchAck",
    "CheckpointInfo",
    "ClaimRequest",
    "ClaimResponse",
    "EpochReport",
    "FinishRequest",
    "HeartbeatRequest",
    "ReportAck",
    "ReportBatch",
    "ResumePoint",
    "StartRequest",
]


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# Letters, digits and . _ : - only: no control, bidi or path characters in logs and tables.
WorkerId = Annotated[
    str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
]


class ClaimRequest(_Message):
    worker_id: WorkerId


class ResumePoint(_Message):
    """A stored checkpoint a lost trial may resume from, with what it must hash to."""

    path: str = Field(max_length=512)
    epoch: Number
    size: Count
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class Assignment(_Message):
    """Everything a worker needs to run one trial."""

    trial_id: Id
    study: str
    trial_number: Number
    attempt: Number
    seed: Count
    model: str
    train: str | None = None  # the user's "module:function"; None for `model:` studies
    dataset: str | dict[str, str]
    metric: str
    maximize: bool = True  # the metric's direction
    stage: Number = 1  # 1-based
    epochs: Number
    space: dict[str, Any]
    fixed: dict[str, Any]
    params: dict[str, Any] | None = None  # set when the master chose them (resume, TPE)
    resume_from: str | None = None  # store path of the checkpoint to resume from
    resume_epoch: Number = 0  # the epoch that checkpoint ends; training goes on after it
    # Newest first: the worker resumes from the first whose size and SHA-256 match and
    # skips truncated or corrupt ones (it sets resume_from/resume_epoch from its choice).
    resume_candidates: list[ResumePoint] = Field(default_factory=list)
    best_score: float | None = None  # the trial's best so far (a resumed trial has one)
    # Per-trial limits: past either, the worker ends the attempt and records it
    # stopped (worker/limits.py): wall-clock seconds, resident memory in MiB.
    max_trial_seconds: float | None = Field(default=None, gt=0)
    max_trial_memory_mb: int | None = Field(default=None, ge=1)


class ClaimResponse(_Message):
    action: Literal["train", "wait", "stop"]
    assignment: Assignment | None = None
    retry_after_s: float = 0.0
    heartbeat_interval_s: float = 5.0  # how often the worker must send a heartbeat


class HeartbeatRequest(_Message):
    worker_id: WorkerId
    trial_id: Id | None = None
    attempt: Number | None = None


class StartRequest(_Message):
    worker_id: WorkerId
    attempt: Number
    params: dict[str, float | int | str | bool]


class CheckpointInfo(_Message):
    relpath: str = Field(min_length=1, max_length=512)
    size: Count
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class EpochReport(_Message):
    worker_id: WorkerId
    attempt: Number
    epoch: int = Field(ge=1, le=1_000_000)
    train_loss: float | None = None
    train_accuracy: float | None = Field(default=None, ge=0, le=1)
    val_loss: float | None = None
    val_accuracy: float | None = Field(default=None, ge=0, le=1)
    # Any named numbers: the user's metrics, e.g. {"val_r2": -0.12}; a non-finite
    # value travels as null and the worker marks the epoch diverged.
    metrics: dict[str, float | None] = Field(default_factory=dict, max_length=64)
    seconds: float = Field(default=0.0, ge=0)
    diverged: bool = False
    checkpoint: CheckpointInfo | None = None
    # Babysitting statistics (loss per iteration, update ratios, layer statistics, ...).
    stats: dict[str, Any] = Field(default_factory=dict)
    # Findings derived from them: [{"code", "message", "epoch"}] (worker.diagnostics).
    warnings: list[dict[str, Any]] = Field(default_factory=list, max_length=32)

    @field_validator("metrics")
    @classmethod
    def _metric_names(cls, value: dict[str, float | None]) -> dict[str, float | None]:
        for name in value:
            check_metric_name(name, where=f"metrics.{name[:40]}")
        return value

    def named_metrics(self) -> dict[str, float | None]:
        """The four built-in fields (when set) and `metrics`, by name."""
        return merged_metrics(self, self.metrics)

    @field_validator("stats", "warnings")
    @classmethod
    def _strict_json(cls, value: Any) -> Any:
        check_strict_json(value, "value")  # no NaN/Infinity, no deep nesting
        return value


class ReportBatch(_Message):
    """Several epochs of one trial in one request (a worker whose epochs are faster than a
    round trip sends what accumulated while the last request was in flight)."""

    reports: list[EpochReport] = Field(min_length=1, max_length=100)


class ReportAck(_Message):
    """`stop` tells the worker to end the trial now (stopped study, early stopping)."""

    stored: bool
    stop: bool = False


class BatchAck(_Message):
    """One acknowledgement per report of a batch, in order; `stop` if any says stop."""

    acks: list[ReportAck]
    stop: bool = False


class FinishRequest(_Message):
    worker_id: WorkerId
    attempt: Number
    state: Literal["completed", "diverged", "failed", "stopped"]
    error: str | None = Field(default=None, max_length=4000)
    # The failure is the environment's, not the trial's (the training code does not import
    # on this worker): the master pauses the study at once.
    environment: bool = False
