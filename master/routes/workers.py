"""Workers: the claim call that hands out trials."""

from __future__ import annotations

from fastapi import APIRouter

from common.protocol import ClaimRequest, ClaimResponse
from master.deps import ServiceDep

router = APIRouter(prefix="/workers", tags=["workers"])


@router.post("/claim")
def claim_trial(body: ClaimRequest, service: ServiceDep) -> ClaimResponse:
    """Hand the calling worker a trial to run, or tell it to wait or stop."""
    return service.claim(body.worker_id)
