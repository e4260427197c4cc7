"""The worker's HTTP client to the master, with bounded retries.

Reports are idempotent on (trial, attempt, epoch) at the master, so a request whose
acknowledgement was lost is simply sent again.
"""

from __future__ import annotations

import logging
import time
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from gridless.common.messages import (
    BatchAck,
    ClaimRequest,
    ClaimResponse,
    EpochReport,
    FinishRequest,
    HeartbeatRequest,
    ReportAck,
    ReportBatch,
    StartRequest,
)

__all__ = ["MasterClient", "MasterGone", "TrialClosed"]

log = logging.getLogger(__name__)
T = TypeVar("T", bound=BaseModel)


class MasterGone(RuntimeError):
    """The master could not be reached within the retry budget."""


class TrialClosed(RuntimeError):
    """The master answered 409: the trial is finished or the attempt superseded."""


class MasterClient:
    """Typed calls to the master's worker endpoints.

    Args:
        base_url: e.g. `http://127.0.0.1:8765`.
        retry_for_s: how long to keep retrying connection errors and 5xx/429 answers.
        transport: an httpx transport (tests inject one; None uses the network).
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        retry_for_s: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=base_url.rstrip("/") + "/api/v1",
            headers=headers,
            timeout=httpx.Timeout(30.0, connect=5.0),
            transport=transport,
        )
        self.retry_for_s = retry_for_s

    def close(self) -> None:
        self._http.close()

    def _post(self, path: str, body: BaseModel, answer: type[T]) -> T:
        deadline = time.monotonic() + self.retry_for_s
        delay = 0.1
        while True:
            try:
                response = self._http.post(path, json=body.model_dump(mode="json"))
            except httpx.TransportError as exc:
                problem: Any = exc.__class__.__name__
            else:
                if response.status_code == 409:
                    raise TrialClosed(response.json().get("detail", "conflict"))
                if response.status_code < 400:
                    return answer.model_validate(response.json())
                if response.status_code not in (429, 502, 503, 504) and response.status_code < 500:
                    raise RuntimeError(
                        f"master refused {path}: {response.status_code} {response.text}"
                    )
                problem = response.status_code
            if time.monotonic() + delay > deadline:
                raise MasterGone(f"no answer from the master for {path} ({problem})")
            log.debug("retrying %s after %s", path, problem)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def claim(self, worker_id: str) -> ClaimResponse:
        return self._post("/workers/claim", ClaimRequest(worker_id=worker_id), ClaimResponse)

    def start(self, trial_id: int, request: StartRequest) -> ReportAck:
        return self._post(f"/trials/{trial_id}/start", request, ReportAck)

    def report(self, trial_id: int, report: EpochReport) -> ReportAck:
        return self._post(f"/trials/{trial_id}/reports", report, ReportAck)

    def reports(self, trial_id: int, batch: ReportBatch) -> BatchAck:
        """Several epochs at once (worker.sender batches them)."""
        return self._post(f"/trials/{trial_id}/reports/batch", batch, BatchAck)

    def finish(self, trial_id: int, request: FinishRequest) -> ReportAck:
        return self._post(f"/trials/{trial_id}/finish", request, ReportAck)

    def heartbeat(self, request: HeartbeatRequest) -> ReportAck:
        return self._post("/workers/heartbeat", request, ReportAck)
