"""Workers: claims and heartbeats from workers; list, launch and kill for people."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Request, status

from gridless.common.messages import ClaimRequest, ClaimResponse, HeartbeatRequest, ReportAck
from gridless.master.deps import ServiceDep, WorkersDep
from gridless.master.protocol import TrialProtocol
from gridless.master.schemas import (
    WorkerPublic,
    WorkersKilled,
    WorkersLaunch,
    WorkersLaunched,
    WorkersPublic,
)

router = APIRouter(prefix="/workers", tags=["workers"])

WorkerId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]


@router.post("/claim")
async def claim_trial(body: ClaimRequest, request: Request) -> ClaimResponse:
    """Hand the calling worker a trial to run (or to resume), or tell it to wait or stop."""
    protocol: TrialProtocol = request.app.state.protocol
    return await protocol.writer.run_async(protocol.claim_job(body.worker_id))


@router.post("/heartbeat")
async def send_heartbeat(body: HeartbeatRequest, request: Request) -> ReportAck:
    """A worker and its trial are alive; `stop` in the answer ends the trial."""
    protocol: TrialProtocol = request.app.state.protocol
    return await protocol.writer.run_async(protocol.heartbeat_job(body))


@router.get("")
def list_workers(service: ServiceDep, workers: WorkersDep) -> WorkersPublic:
    """Every worker seen, with its state, current trial and last heartbeat."""
    rows = service.list_workers()
    return WorkersPublic(
        data=[WorkerPublic.model_validate(w) for w in rows],
        count=len(rows),
        running=workers.alive(),
    )


@router.post("", status_code=status.HTTP_202_ACCEPTED)
def launch_workers(
    workers: WorkersDep, body: Annotated[WorkersLaunch | None, Body()] = None
) -> WorkersLaunched:
    """Launch workers through Ray (they claim trials as soon as they start); count: 1-256."""
    return WorkersLaunched(started=workers.launch((body or WorkersLaunch()).count))


@router.delete("/{worker_id}")
def kill_worker(worker_id: WorkerId, workers: WorkersDep) -> WorkersKilled:
    """Kill one worker; its trial is marked lost and resumes on another worker."""
    workers.kill(worker_id)
    return WorkersKilled(killed=[worker_id])


@router.delete("")
def kill_workers(workers: WorkersDep) -> WorkersKilled:
    """Kill every worker this master launched."""
    return WorkersKilled(killed=workers.kill_all())
