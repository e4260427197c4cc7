"""The CLI's typed client of a master's REST API: one method per call the
commands make, each returning the API's own schema model (master/schemas.py); whatever
goes wrong, an unreachable master or a 4xx/5xx, is one `ApiError` with the API's message."""

from __future__ import annotations

import json
from typing import Annotated, Any, TypeVar

import httpx
import typer
from pydantic import BaseModel, ValidationError

from gridless.common.errors import GridlessError
from gridless.master.schemas import (
    CheckpointMetaPublic,
    EnsembleJobPublic,
    ParetoPublic,
    StudiesPublic,
    StudyCheckpointsPublic,
    StudyDetailPublic,
    StudyPublic,
    TrialsPublic,
    WorkersKilled,
    WorkersLaunched,
    WorkersPublic,
)

__all__ = ["ApiClient", "ApiError", "TokenOption", "UrlOption"]

UrlOption = Annotated[str, typer.Option(envvar="GRIDLESS_URL", help="the master's URL")]
TokenOption = Annotated[str | None, typer.Option(envvar="GRIDLESS_TOKEN", help="bearer token")]

Model = TypeVar("Model", bound=BaseModel)


class ApiError(GridlessError):
    """A call the master did not answer with a 2xx: `status` is its HTTP status (None when
    it never answered) and `detail` the API's own message."""

    def __init__(self, message: str, *, status: int | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


def _detail(response: httpx.Response) -> str:
    """The `detail` of an error answer; the body itself when it is not the API's JSON."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()
    detail = body.get("detail", body) if isinstance(body, dict) else body
    return detail if isinstance(detail, str) else json.dumps(detail)


class ApiClient:
    """The master's API at `url` (its `/api/v1` routes), `token` sent as a bearer token.

    Args:
        transport: an httpx transport to use instead of the network (tests).
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = 30,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=url.rstrip("/") + "/api/v1",
            headers=headers,
            timeout=timeout,
            transport=transport,
        )

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The answer to one request, when it is a 2xx.

        Raises:
            ApiError: the master is unreachable or answered 4xx/5xx.
        """
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ApiError(
                f"cannot reach the master at {self._http.base_url} ({exc.__class__.__name__})"
            ) from None
        if response.status_code >= 400:
            detail = _detail(response)
            raise ApiError(
                f"{method} {path}: {response.status_code} {detail}",
                status=response.status_code,
                detail=detail,
            )
        return response

    def _call(self, model: type[Model], method: str, path: str, **kwargs: Any) -> Model:
        """One request's answer as the API's `model`."""
        response = self._send(method, path, **kwargs)
        try:
            return model.model_validate(response.json())
        except (ValueError, ValidationError) as exc:  # a proxy's page, another version
            raise ApiError(
                f"{method} {path}: the answer is not a {model.__name__} "
                f"({exc.__class__.__name__}); is {self._http.base_url} a gridless master?",
                status=response.status_code,
            ) from None

    # -- studies ---------------------------------------------------------------------

    def create_study(self, spec: dict[str, Any]) -> StudyPublic:
        """`POST /studies`: a spec (the YAML file's content) as a new study."""
        return self._call(StudyPublic, "POST", "/studies", json=spec)

    def studies(self, *, limit: int = 1000) -> StudiesPublic:
        """`GET /studies`: the master's studies, oldest first."""
        return self._call(StudiesPublic, "GET", "/studies", params={"limit": limit})

    def study(self, study_id: int) -> StudyDetailPublic:
        """A study with its stages, progress, best score, border flags and warning counts."""
        return self._call(StudyDetailPublic, "GET", f"/studies/{study_id}")

    def stop_study(self, study_id: int) -> StudyDetailPublic:
        return self._call(StudyDetailPublic, "POST", f"/studies/{study_id}/stop")

    def add_stages(
        self, study_id: int, stages: list[dict[str, int]], *, add_trials: int = 0
    ) -> StudyDetailPublic:
        """`POST /studies/{id}/stages`: stages to append, or trials for the running one."""
        body = {"stages": stages, "add_trials": add_trials}
        return self._call(StudyDetailPublic, "POST", f"/studies/{study_id}/stages", json=body)

    def edit_space(self, study_id: int, space: dict[str, Any]) -> StudyDetailPublic:
        """`PATCH /studies/{id}/space`: the next stage's ranges."""
        body = {"space": space}
        return self._call(StudyDetailPublic, "PATCH", f"/studies/{study_id}/space", json=body)

    def trials(
        self,
        study_id: int,
        *,
        limit: int,
        state: str | None = None,
        sort: str | None = None,
        offset: int = 0,
    ) -> TrialsPublic:
        """A page of a study's trials: ranked best first unless `state` or `sort` is set."""
        params: dict[str, str | int] = {"limit": limit, "offset": offset}
        params.update({k: v for k, v in (("state", state), ("sort", sort)) if v is not None})
        return self._call(TrialsPublic, "GET", f"/studies/{study_id}/trials", params=params)

    def pareto(self, study_id: int) -> ParetoPublic:
        """`GET /studies/{id}/pareto`: a multi-objective study's Pareto front."""
        return self._call(ParetoPublic, "GET", f"/studies/{study_id}/pareto")

    def trial_log(self, study_id: int, number: int) -> str:
        """What trial `number` of the study printed, every attempt."""
        return self._send("GET", f"/studies/{study_id}/trials/{number}/log").text

    # -- workers ---------------------------------------------------------------------

    def workers(self) -> WorkersPublic:
        return self._call(WorkersPublic, "GET", "/workers")

    def launch_workers(self, count: int) -> WorkersLaunched:
        """`POST /workers`: `count` workers through the master's Ray."""
        return self._call(WorkersLaunched, "POST", "/workers", json={"count": count})

    def kill_worker(self, worker_id: str) -> WorkersKilled:
        return self._call(WorkersKilled, "DELETE", f"/workers/{worker_id}")

    def kill_workers(self) -> WorkersKilled:
        return self._call(WorkersKilled, "DELETE", "/workers")

    # -- checkpoints -----------------------------------------------------------------

    def checkpoints(
        self, study_id: int, *, trial: int | None = None, limit: int = 20
    ) -> StudyCheckpointsPublic:
        """A study's live checkpoints, best first; `trial` keeps one trial's (its number)."""
        params: dict[str, int] = {"limit": limit}
        if trial is not None:
            params["trial"] = trial
        path = f"/studies/{study_id}/checkpoints"
        return self._call(StudyCheckpointsPublic, "GET", path, params=params)

    def checkpoint_meta(self, path: str) -> CheckpointMetaPublic:
        params = {"path": path}
        return self._call(CheckpointMetaPublic, "GET", "/checkpoints/meta", params=params)

    def checkpoint_file(self, path: str) -> tuple[bytes, str]:
        """A checkpoint's bytes and the SHA-256 the master checked them against."""
        response = self._send("GET", "/checkpoints/file", params={"path": path})
        return response.content, response.headers.get("x-checkpoint-sha256", "")

    # -- ensembles -------------------------------------------------------------------

    def build_ensembles(
        self,
        study_id: int,
        *,
        k: int,
        retrain: bool,
        predict: str | None = None,
        evaluate: str | None = None,
    ) -> EnsembleJobPublic:
        """`POST /studies/{id}/ensembles`: the job that builds every ensemble kind on a
        worker and evaluates it on the test split (poll it with `ensemble_job`)."""
        body: dict[str, Any] = {"k": k, "retrain": retrain}
        body.update({key: v for key, v in (("predict", predict), ("evaluate", evaluate)) if v})
        path = f"/studies/{study_id}/ensembles"
        return self._call(EnsembleJobPublic, "POST", path, json=body)

    def ensemble_job(self, study_id: int, job_id: int) -> EnsembleJobPublic:
        path = f"/studies/{study_id}/ensembles/jobs/{job_id}"
        return self._call(EnsembleJobPublic, "GET", path)
