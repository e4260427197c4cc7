"""Ensemble builds are jobs: post one, then poll it to its end."""

from __future__ import annotations

import time
from typing import Any

import httpx

__all__ = ["build_ensembles", "wait_for_job"]


def wait_for_job(api: httpx.Client, job: dict[str, Any], timeout_s: float = 300) -> dict[str, Any]:
    """The job once it is done or failed, polled at its `url` (`api`'s base URL is the
    master's `/api/v1`)."""
    path = f"/studies/{job['study_id']}/ensembles/jobs/{job['id']}"
    deadline = time.monotonic() + timeout_s
    while job["state"] not in ("done", "failed"):
        assert time.monotonic() < deadline, f"ensemble job {job['id']} is still {job['state']}"
        time.sleep(0.1)
        answer = api.get(path)
        assert answer.status_code == 200, answer.text
        job = answer.json()
    return job


def build_ensembles(
    url: str, study_id: int, body: dict[str, Any] | None = None, *, timeout_s: float = 300
) -> dict[str, Any]:
    """POST a build to the master at `url`, wait for its job and return the report, which
    is then also `GET .../ensembles`'s."""
    with httpx.Client(base_url=url + "/api/v1", timeout=60) as api:
        posted = api.post(f"/studies/{study_id}/ensembles", json=body)
        assert posted.status_code == 202, posted.text
        job = wait_for_job(api, posted.json(), timeout_s)
        assert (job["state"], job["error"]) == ("done", None)
        latest = api.get(f"/studies/{study_id}/ensembles").json()
    assert job["report"] == latest
    return latest
