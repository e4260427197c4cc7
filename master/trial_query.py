"""Which trials a list shows and in what order: the filters (`state`, `stage`,
`param=name:low:high`) and the allow-listed sort keys of `GET /studies/{id}/trials`,
shared by its pages and its export."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from gridless.common.db import StageRow, StudyRow, TrialRow
from gridless.common.errors import NotFoundError, SpecError
from gridless.master.storage import ranked

__all__ = ["SORT_FIELDS", "ParamRange", "sort_key", "trial_query"]

# Trial columns a list may be sorted by (`-name` for descending); `params.<name>` sorts by
# a hyperparameter of the study's space, `metrics.<name>` by a metric at the best epoch.
_METRIC_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")

SORT_FIELDS: dict[str, InstrumentedAttribute[Any]] = {
    "best_score": TrialRow.best_score,
    "best_epoch": TrialRow.best_epoch,
    "last_epoch": TrialRow.last_epoch,
    "number": TrialRow.number,
    "attempt": TrialRow.attempt,
    "created_at": TrialRow.created_at,
    "finished_at": TrialRow.finished_at,
}


@dataclass(frozen=True)
class ParamRange:
    """A filter `name:low:high` on a hyperparameter (either bound may be open)."""

    name: str
    low: float | None
    high: float | None

    @classmethod
    def parse(cls, text: str) -> ParamRange:
        parts = text.split(":")
        if len(parts) != 3 or not parts[0]:
            raise SpecError(f"param: expected name:low:high (a bound may be empty), got {text!r}")
        bounds: list[float | None] = []
        for part in parts[1:]:
            try:
                value = float(part) if part else None
            except ValueError:
                raise SpecError(f"param: {part!r} is not a number in {text!r}") from None
            if value is not None and not math.isfinite(value):
                raise SpecError(f"param: bounds must be finite, got {text!r}")
            bounds.append(value)
        return cls(parts[0], bounds[0], bounds[1])


def sort_key(study: StudyRow, sort: str) -> list[ColumnElement[Any]]:
    descending = sort.startswith("-")
    name = sort.lstrip("-")
    params = list(study.spec.get("space", {})) + list(study.spec.get("fixed", {}))
    column: ColumnElement[Any]
    if name in SORT_FIELDS:
        column = SORT_FIELDS[name].expression
    elif name.startswith("params.") and name[7:] in params:
        column = TrialRow.params[name[7:]].as_float()
    elif name.startswith("metrics.") and _METRIC_NAME.match(name[8:]):
        column = TrialRow.best_metrics[name[8:]].as_float()
    else:
        valid = ", ".join([*SORT_FIELDS, *(f"params.{p}" for p in params), "metrics.NAME"])
        raise SpecError(f"sort: {name!r} is not sortable; valid: {valid} (prefix - to reverse)")
    ordered = column.desc() if descending else column.asc()
    return [ordered.nulls_last(), TrialRow.number.asc()]


def trial_query(
    s: Session,
    study: StudyRow,
    *,
    state: str | None,
    stage: int | None,
    params: list[ParamRange] | None,
    sort: str | None,
) -> tuple[Select[TrialRow], list[ColumnElement[bool]]]:
    """The study's trials that pass the filters, in list order (ranked best first by
    default), and the filters.

    Raises:
        NotFoundError: for a stage the study does not have.
        SpecError: for a sort key outside the allow-list or an unknown parameter.
    """
    conditions: list[ColumnElement[bool]] = [TrialRow.study_id == study.id]
    if state is not None:
        conditions.append(TrialRow.state == state)
    if stage is not None:
        stage_id = s.scalar(
            select(StageRow.id).where(StageRow.study_id == study.id, StageRow.index == stage - 1)
        )
        if stage_id is None:
            raise NotFoundError(f"study {study.id} has no stage {stage}")
        conditions.append(TrialRow.stage_id == stage_id)
    known = set(study.spec.get("space", {})) | set(study.spec.get("fixed", {}))
    for flt in params or []:
        if flt.name not in known:
            raise SpecError(
                f"param: {flt.name!r} is not a parameter of this study; "
                f"valid: {', '.join(sorted(known))}"
            )
        value = TrialRow.params[flt.name].as_float()
        if flt.low is not None:
            conditions.append(value >= flt.low)
        if flt.high is not None:
            conditions.append(value <= flt.high)
    if sort is None:
        return ranked(study).where(*conditions[1:]), conditions
    return select(TrialRow).where(*conditions).order_by(*sort_key(study, sort)), conditions
