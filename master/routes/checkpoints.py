"""Checkpoint browsing: list per study (best first), metadata, download, resume.

Only checkpoints the database records (and has not deleted) are ever served: a path is
looked up by exact match, then resolved inside the store, then its SHA-256 is checked.
`..`, percent-encoded or double-encoded variants, backslashes, absolute paths and
symlinks pointing out of the store all get a 4xx.

A download is named `<study>-trial<number, 6 digits>-<file name>`: every
trial's checkpoints share their score-first file names, so the plain name collided in a
downloads folder.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request, status
from fastapi.responses import FileResponse

from gridless.common.bounds import Id, Number, Offset
from gridless.common.checkpoint_files import digest_file, read_npz, read_pt
from gridless.common.checkpoints import CheckpointStore, trial_folder
from gridless.common.db import CheckpointRow, TrialRow
from gridless.common.errors import ConflictError, NotFoundError
from gridless.master.deps import ProtocolDep, ServiceDep, StudyDep
from gridless.master.schemas import (
    CheckpointMetaPublic,
    CheckpointResume,
    EpochMetricPublic,
    StudyCheckpointPublic,
    StudyCheckpointsPublic,
    TrialPublic,
)

router = APIRouter(tags=["checkpoints"])

PathQuery = Annotated[str, Query(min_length=1, max_length=512, description="store path")]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def download_name(study: str, number: int, file_name: str) -> str:
    """The name a downloaded checkpoint gets: `digits-mlp-trial000012-val0.9731_ep012.npz`.

    The dashboard's download link builds the same name (master/static/app.js).
    """
    return f"{study}-trial{trial_folder(number)}-{file_name}"


def content_disposition(name: str) -> str:
    """An `attachment` header value for `name` (RFC 6266): a `filename` of safe ASCII
    characters only (others become `_`, a leading dot too), plus `filename*` with the
    UTF-8 name where the two differ."""
    plain = _UNSAFE.sub("_", name)
    if plain.startswith("."):
        plain = "_" + plain[1:]
    value = f'attachment; filename="{plain}"'
    if plain != name:
        value += f"; filename*=UTF-8''{quote(name, safe='')}"
    return value


def _public(ck: CheckpointRow, trial: TrialRow) -> StudyCheckpointPublic:
    return StudyCheckpointPublic(
        path=ck.path,
        name=Path(ck.path).name,
        trial_id=trial.id,
        trial_number=trial.number,
        epoch=ck.epoch,
        attempt=ck.attempt,
        score=ck.score,
        size=ck.size,
        sha256=ck.sha256,
        created_at=ck.created_at,
    )


@router.get("/studies/{study_id}/checkpoints")
def list_study_checkpoints(
    study: StudyDep,
    service: ServiceDep,
    trial_id: Annotated[Id | None, Query()] = None,
    trial: Annotated[Number | None, Query(description="a trial's number in the study")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[Offset, Query()] = 0,
) -> StudyCheckpointsPublic:
    """A study's live checkpoints, best score first (the order of their file names);
    `trial` keeps one trial's (its number, as the CLI shows it)."""
    rows, count = service.study_checkpoints(
        study.id, limit=limit, offset=offset, trial_id=trial_id, trial_number=trial
    )
    return StudyCheckpointsPublic(data=[_public(ck, t) for ck, t in rows], count=count)


def _verified(store: CheckpointStore, ck: CheckpointRow) -> Path:
    try:
        file = store.fetch(ck.path)  # refuses anything that resolves outside the store
    except NotFoundError:
        raise NotFoundError(
            f"checkpoint {ck.path!r} is recorded but missing from the store"
        ) from None
    if digest_file(file)[1] != ck.sha256:
        raise ConflictError(f"checkpoint {ck.path!r} does not match its recorded SHA-256")
    return file


def _file_meta(file: Path, relpath: str) -> dict[str, Any] | None:
    """The JSON metadata inside a checkpoint, read without unpickling anything.

    Raises:
        ConflictError: for a file that is not a plain checkpoint (a pickle, garbage).
    """
    refusal = ConflictError(
        f"checkpoint {relpath!r} is not a plain array/weights file (gridless never "
        "unpickles; a file that needs pickle was not written by gridless)"
    )
    if file.suffix == ".npz":
        try:
            return read_npz(file)[1]
        except (ValueError, OSError, EOFError, UnicodeDecodeError) as exc:
            raise refusal from exc
    if importlib.util.find_spec("torch") is None:
        return None
    try:
        return read_pt(file)[1]
    except Exception as exc:  # weights_only refusals arrive as UnpicklingError, RuntimeError
        raise refusal from exc


@router.get("/checkpoints/meta")
def read_checkpoint(
    path: PathQuery, request: Request, service: ServiceDep
) -> CheckpointMetaPublic:
    """A checkpoint's metadata: its trial's parameters, its epoch's metrics, the metadata
    stored in the file (read without unpickling anything)."""
    ck, trial = service.recorded_checkpoint(path)
    file = _verified(request.app.state.store, ck)
    metrics = [m for m in service.trial_metrics(trial.id) if m.epoch == ck.epoch]
    return CheckpointMetaPublic(
        **_public(ck, trial).model_dump(),
        params=trial.params,
        trial_state=trial.state,
        metrics=EpochMetricPublic.model_validate(metrics[0]) if metrics else None,
        file_meta=_file_meta(file, ck.path),
    )


@router.get("/checkpoints/file", response_class=FileResponse)
def download_checkpoint(path: PathQuery, request: Request, service: ServiceDep) -> FileResponse:
    """The checkpoint file itself, after checking its SHA-256 against the database; named
    `<study>-trial<number>-<file name>` for the downloads folder."""
    ck, trial = service.recorded_checkpoint(path)
    file = _verified(request.app.state.store, ck)
    study = service.get_study(trial.study_id)
    name = download_name(study.name, trial.number, file.name)
    return FileResponse(
        file,
        media_type="application/octet-stream",
        headers={
            "X-Checkpoint-SHA256": ck.sha256,
            "Content-Disposition": content_disposition(name),
        },
    )


@router.post("/checkpoints/resume", status_code=status.HTTP_201_CREATED)
def resume_checkpoint(body: CheckpointResume, protocol: ProtocolDep) -> TrialPublic:
    """Continue a trial from a chosen checkpoint, as a new trial, for `epochs` more epochs."""
    return TrialPublic.model_validate(protocol.resume_checkpoint(body.path, body.epochs))
