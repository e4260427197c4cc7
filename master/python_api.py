"""gridless from Python (a notebook, a script): `connect` to a running master, read a
`Study`'s trials and best result, and `load_best` its best checkpoint's state; `run`
(master/python_run.py) starts one on this machine and returns the same `Study`.

Everything goes over HTTP through the CLI's `ApiClient`, so a `Study` from `run` and
one from `connect` behave alike. Nothing here installs signal handlers or exits the
interpreter: errors are `GridlessError`s, and the master of a `run` serves from a daemon
thread until `Study.close()` (or the interpreter's exit).
"""

from __future__ import annotations

import atexit
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gridless.common.errors import GridlessError
from gridless.common.states import StudyState
from gridless.master.cli.client import ApiClient
from gridless.master.cli.follow import follow, is_over
from gridless.master.schemas import StudyDetailPublic, TrialSummaryPublic
from gridless.worker.trial import load_state

if TYPE_CHECKING:
    import pandas

__all__ = ["Best", "Client", "LocalRun", "Study", "TrialResult", "connect", "load_best"]

log = logging.getLogger(__name__)

POLL_S = 0.5
PAGE = 1000  # trials per request (the API's largest page)


@dataclass(frozen=True)
class TrialResult:
    """One trial as the API reports it: `metrics` are every metric at its best epoch,
    `last_metrics` those of the last epoch it reported."""

    number: int
    state: str
    stage: int | None
    params: dict[str, Any]
    score: float | None
    best_epoch: int | None
    last_epoch: int
    metrics: dict[str, float | None]
    last_metrics: dict[str, float | None]
    error: str | None

    @classmethod
    def from_api(cls, trial: TrialSummaryPublic) -> TrialResult:
        return cls(
            number=trial.number,
            state=trial.state,
            stage=trial.stage,
            params=dict(trial.params or {}),
            score=trial.best_score,
            best_epoch=trial.best_epoch,
            last_epoch=trial.last_epoch,
            metrics=dict(trial.best_metrics or {}),
            last_metrics=dict(trial.metrics),
            error=trial.error,
        )


@dataclass(frozen=True)
class Best:
    """The best trial: its parameters, score (the study's metric at its best epoch), and
    the checkpoint of that epoch (a path in the study's store; None when it saved none)."""

    trial: int
    params: dict[str, Any]
    score: float
    epoch: int | None
    metrics: dict[str, float | None]
    checkpoint: str | None


@dataclass
class LocalRun:
    """What `run` (master/python_run.py) started on this machine: the master's server,
    its worker manager, and whether the Ray it runs on is ours to shut down."""

    target: Path
    server: Any  # BackgroundServer
    manager: Any  # WorkerManager
    own_ray: bool
    workers_down: bool = False
    closed: bool = False
    _exit_hook: Callable[[], None] | None = field(default=None, repr=False)

    def stop_workers(self) -> None:
        """The workers and (when `run` started it) Ray end; the master keeps serving."""
        if self.workers_down:
            return
        self.workers_down = True
        import ray

        self.manager.shutdown()
        if self.own_ray:
            ray.shutdown()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.stop_workers()
        finally:
            self.server.stop()
            if self._exit_hook is not None:
                atexit.unregister(self._exit_hook)


class Study:
    """A study on a master, read over its API. From `run` it also owns that local master:
    `wait()` stops its workers when the study ends, `close()` the master."""

    def __init__(
        self,
        client: ApiClient,
        study_id: int,
        *,
        url: str,
        local: LocalRun | None = None,
        owns_client: bool = True,
    ) -> None:
        self._client = client
        self._owns_client = owns_client
        self.url = url.rstrip("/")
        """The master's URL (its dashboard is there while it serves)."""
        self.id = study_id
        self._local = local
        self._detail = client.study(study_id)
        self.name = self._detail.name
        self.metric = self._detail.metric
        self.maximize = self._detail.maximize

    def __repr__(self) -> str:
        return f"Study(id={self.id}, name={self.name!r}, state={self._detail.state!r})"

    def __enter__(self) -> Study:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def run_dir(self) -> Path | None:
        """The run directory `run` made (None for a study reached with `connect`)."""
        return self._local.target if self._local is not None else None

    def detail(self) -> StudyDetailPublic:
        """The study as the API has it now: stages, progress, best score, border flags."""
        self._detail = self._client.study(self.id)
        return self._detail

    @property
    def state(self) -> str:
        """running, paused, completed or stopped (read now)."""
        return self.detail().state

    def is_over(self) -> bool:
        """Ended, or paused by gridless (the failure breaker, `detail().state_reason`)."""
        return is_over(self.detail(), ends_on_pause=self._local is not None)

    def wait(self, *, timeout: float | None = None, progress: bool = False) -> Study:
        """Block until the study is over; a study from `run` then stops its workers.

        Args:
            timeout: seconds at most; None waits for the end.
            progress: draw the CLI's progress bar while waiting.

        Raises:
            TimeoutError: `timeout` passed first (the study goes on).
            GridlessError: every worker of a `run` ended before the study did.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        own = self._local is not None and not self._local.workers_down
        try:
            if progress and deadline is None:
                follow(self._client, self.id, own_workers=own)
            else:
                while not self.is_over():
                    if own and self.detail().state == StudyState.RUNNING:
                        if not self._client.workers().running:
                            raise GridlessError("every worker ended before the study finished")
                    if deadline is not None and time.monotonic() > deadline:
                        raise TimeoutError(f"study {self.name!r} still {self._detail.state}")
                    time.sleep(POLL_S)
        except GridlessError:
            if self._local is not None:
                self._local.stop_workers()
            raise
        if self._local is not None:
            self._local.stop_workers()
        self.detail()
        return self

    def stop(self) -> Study:
        """Stop the study: running trials end, no new ones start."""
        self._detail = self._client.stop_study(self.id)
        return self

    def trials(self, *, state: str | None = None) -> list[TrialResult]:
        """Every trial (or those in `state`), by number."""
        found: list[TrialResult] = []
        while True:
            page = self._client.trials(
                self.id, limit=PAGE, state=state, sort="number", offset=len(found)
            )
            found += [TrialResult.from_api(t) for t in page.data]
            if not page.data or len(found) >= page.count:
                return found

    def trials_frame(self, *, state: str | None = None) -> pandas.DataFrame:
        """The trials as a pandas DataFrame, one row a trial: number, state, stage, score,
        best_epoch, last_epoch, error, then `params.<name>` and `metrics.<name>` (at the
        best epoch) columns, as in the CSV export.

        Raises:
            ImportError: pandas is not installed.
        """
        try:
            import pandas
        except ImportError:
            raise ImportError(
                "Study.trials_frame() needs pandas: pip install pandas "
                "(Study.trials() gives the same trials as a list without it)"
            ) from None
        rows = []
        for t in self.trials(state=state):
            row: dict[str, Any] = {
                "number": t.number,
                "state": t.state,
                "stage": t.stage,
                "score": t.score,
                "best_epoch": t.best_epoch,
                "last_epoch": t.last_epoch,
                "error": t.error,
            }
            row.update({f"params.{k}": v for k, v in t.params.items()})
            row.update({f"metrics.{k}": v for k, v in t.metrics.items()})
            rows.append(row)
        return pandas.DataFrame(rows).set_index("number") if rows else pandas.DataFrame()

    @property
    def best(self) -> Best | None:
        """The best trial so far with its best epoch's checkpoint; None before any score."""
        ranked = self._client.trials(self.id, limit=1).data
        top = ranked[0] if ranked else None
        if top is None or top.best_score is None:
            return None
        kept = self._client.checkpoints(self.id, trial=top.number, limit=100).data
        # The checkpoint of the best epoch; the trial's best one left if retention
        # removed that (as the CLI's result names it).
        chosen = next((c for c in kept if c.epoch == top.best_epoch), kept[0] if kept else None)
        return Best(
            trial=top.number,
            params=dict(top.params or {}),
            score=top.best_score,
            epoch=top.best_epoch,
            metrics=dict(top.best_metrics or {}),
            checkpoint=chosen.path if chosen is not None else None,
        )

    def close(self) -> None:
        """Stop a `run`'s workers and master (its run directory stays), and its HTTP
        client (a study from `Client.study` shares the client's: `Client.close()`)."""
        try:
            if self._local is not None:
                self._local.close()
        finally:
            if self._owns_client:
                self._client.close()


class Client:
    """A running master (`gridless master`, or a `gridless run` while it lasts)."""

    def __init__(self, url: str, token: str | None = None) -> None:
        self.url = url.rstrip("/")
        self._api = ApiClient(self.url, token)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._api.close()

    def studies(self) -> list[str]:
        """The names of the master's studies, oldest first."""
        return [s.name for s in self._api.studies().data]

    def study(self, id_or_name: int | str | None = None) -> Study:
        """A study by id or name; None: the newest.

        Raises:
            GridlessError: no such study (or none at all).
        """
        if isinstance(id_or_name, int):
            return Study(self._api, id_or_name, url=self.url, owns_client=False)
        found = self._api.studies().data
        if id_or_name is not None:
            found = [s for s in found if s.name == id_or_name]
        if not found:
            names = ", ".join(s.name for s in self._api.studies().data) or "none"
            wanted = "any study" if id_or_name is None else f"a study {id_or_name!r}"
            raise GridlessError(f"{self.url} has no {wanted} (its studies: {names})")
        return Study(self._api, found[-1].id, url=self.url, owns_client=False)


def connect(url: str, token: str | None = None) -> Client:
    """The master at `url` (`token`: its bearer token, when it listens beyond loopback)."""
    return Client(url, token)


def load_best(study: Study, *, device: str = "cpu") -> Any:
    """The state of the study's best checkpoint, as `trial.restore()` returns it (read
    without pickle: `.npz` with allow_pickle=False, `.pt` with weights_only=True); for a
    built-in model, its checkpoint's arrays.

    Raises:
        GridlessError: no trial has a score yet, or the best one saved no checkpoint.
    """
    best = study.best
    if best is None:
        raise GridlessError(f"study {study.name!r} has no scored trial yet")
    if best.checkpoint is None:
        raise GridlessError(
            f"study {study.name!r}: its best trial {best.trial} saved no checkpoint "
            "(call trial.save(state) after trial.report)"
        )
    data, _ = study._client.checkpoint_file(best.checkpoint)
    suffix = Path(best.checkpoint).suffix
    with tempfile.TemporaryDirectory(prefix="gridless-best-") as folder:
        path = Path(folder) / f"best{suffix}"
        path.write_bytes(data)
        if study._detail.spec.get("train") is not None:
            return load_state(path, device=device)
        from gridless.common.checkpoint_files import read_npz, read_pt

        fields, _meta = read_pt(path, map_location=device) if suffix == ".pt" else read_npz(path)
        return fields
