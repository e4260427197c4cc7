"""API schemas (separate from the ORM rows)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = [
    "CheckpointPublic",
    "EpochMetricPublic",
    "StagePublic",
    "StudiesPublic",
    "StudyDetailPublic",
    "StudyPublic",
    "TrialDetailPublic",
    "TrialPublic",
    "TrialsPublic",
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
    created_at: dt.datetime
    finished_at: dt.datetime | None
    spec: dict[str, Any]


class StudyDetailPublic(StudyPublic):
    stages: list[StagePublic]
    finished_trials: int
    total_trials: int
    best_score: float | None
    border_flags: list[dict[str, Any]]
    warning_counts: dict[str, int]


class StudiesPublic(BaseModel):
    data: list[StudyPublic]
    count: int


class TrialPublic(_Public):
    id: int
    study_id: int
    number: int
    rank: int | None = None
    state: str
    attempt: int
    epochs: int
    last_epoch: int
    params: dict[str, Any] | None
    best_score: float | None
    best_epoch: int | None
    worker_id: str | None
    error: str | None
    warnings: list[dict[str, Any]] | None
    created_at: dt.datetime
    finished_at: dt.datetime | None


class TrialsPublic(BaseModel):
    data: list[TrialPublic]
    count: int


class EpochMetricPublic(_Public):
    epoch: int
    attempt: int
    train_loss: float | None
    train_accuracy: float | None
    val_loss: float | None
    val_accuracy: float | None
    seconds: float
    stats: dict[str, Any]


class CheckpointPublic(_Public):
    epoch: int
    score: float
    path: str
    size: int
    sha256: str


class TrialDetailPublic(TrialPublic):
    metrics: list[EpochMetricPublic]
    checkpoints: list[CheckpointPublic]
