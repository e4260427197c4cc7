"""gridless from Python (a notebook, a script): `run` a study on this machine as `gridless
run` does, `connect` to a running master, read a `Study`'s trials and best result, and
`load_best` its best checkpoint's state.

`run` uses the CLI's own machinery (master/cli/local.py and checks.py): the same spec
checks, run directory (`gridless resume` continues it), in-process master and local Ray.
Everything after the start goes over HTTP through `ApiClient`, so a `Study` from `run`
and one from `connect` behave alike. Nothing here installs signal handlers or exits the
interpreter: errors are `GridlessError`s, and the master of a `run` serves from a daemon
thread until `Study.close()` (or the interpreter's exit).
"""

from __future__ import annotations

import atexit
import datetime as dt
import json
import logging
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from gridless.common.errors import GridlessError
from gridless.common.settings import run_paths
from gridless.common.spec import StudySpec, parse_spec
from gridless.common.states import StudyState
from gridless.master.cli.checks import (
    import_paths,
    print_preflight,
    run_preflight,
    validate,
    wire_spec,
)
from gridless.master.cli.client import ApiClient
from gridless.master.cli.follow import follow, is_over
from gridless.master.cli.local import RUN_RECORD, fit_workers, prepared_store, start_ray
from gridless.master.schemas import StudyDetailPublic, TrialSummaryPublic
from gridless.worker.trial import load_state

if TYPE_CHECKING:
    import pandas

__all__ = ["Best", "Client", "Study", "TrialResult", "connect", "load_best", "run"]

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
class _LocalRun:
    """What `run` started on this machine: the master's server, its worker manager, and
    whether the Ray it runs on is ours to shut down."""

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
        self, client: ApiClient, study_id: int, *, url: str, local: _LocalRun | None = None
    ) -> None:
        self._client = client
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
        """Stop a `run`'s workers and master (its run directory stays), and the client."""
        try:
            if self._local is not None:
                self._local.close()
        finally:
            self._client.close()


class Client:
    """A running master (`gridless master`, or a `gridless run` while it lasts)."""

    def __init__(self, url: str, token: str | None = None) -> None:
        self.url = url.rstrip("/")
        self._token = token
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
            return Study(ApiClient(self.url, self._token), id_or_name, url=self.url)
        found = self._api.studies().data
        if id_or_name is not None:
            found = [s for s in found if s.name == id_or_name]
        if not found:
            names = ", ".join(s.name for s in self._api.studies().data) or "none"
            wanted = "any study" if id_or_name is None else f"a study {id_or_name!r}"
            raise GridlessError(f"{self.url} has no {wanted} (its studies: {names})")
        return Study(ApiClient(self.url, self._token), found[-1].id, url=self.url)


def connect(url: str, token: str | None = None) -> Client:
    """The master at `url` (`token`: its bearer token, when it listens beyond loopback)."""
    return Client(url, token)


def _spec_file(spec: str | Path | dict[str, Any] | StudySpec, folder: Path) -> Path:
    """A path to the spec's YAML: a path as it is, a dict or parsed spec written into
    `folder` (its relative `warm_start.run` made absolute against the working directory)."""
    if isinstance(spec, str | Path):
        path = Path(spec)
        if not path.is_file():
            raise GridlessError(f"{path}: no such spec file")
        return path
    raw = spec.model_dump(mode="json", exclude_unset=True) if isinstance(spec, StudySpec) else spec
    if not isinstance(raw, dict):
        raise GridlessError(f"spec: a dict, a StudySpec or a YAML path, not {type(raw).__name__}")
    raw = json.loads(json.dumps(raw))  # a copy, and JSON's types only
    warm = raw.get("warm_start")
    if isinstance(warm, dict) and isinstance(warm.get("run"), str):
        warm["run"] = str(Path(warm["run"]).resolve())
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def _code_roots(spec: StudySpec) -> list[str]:
    """The folders the spec's code was imported from in this process (`validate` imports
    it), for the workers' import path: a notebook's `sys.path` entries reach Ray too."""
    roots = []
    for target in (spec.train, spec.predict, spec.evaluate, spec.model):
        if not target or ":" not in target:
            continue
        name = target.partition(":")[0]
        file = getattr(sys.modules.get(name), "__file__", None)
        if file is None:
            continue
        path = Path(file).resolve()
        depth = name.count(".") + (1 if path.name == "__init__.py" else 0)
        roots.append(str(path.parents[depth]))
    return roots


def run(
    spec: str | Path | dict[str, Any] | StudySpec,
    *,
    workers: int | None = None,
    run_dir: str | Path = "gridless-runs",
    store: str | None = None,
    ray_address: str | None = None,
    ray_cpus: int | None = None,
    ray_gpus: int | None = None,
    wait: bool = True,
    progress: bool = False,
    preflight: bool = True,
) -> Study:
    """Run a study on this machine as `gridless run SPEC` does: check the spec, make a run
    directory under `run_dir`, serve its master in this process, start Ray workers.

    Args:
        spec: a YAML file's path, the spec as a dict, or a parsed `StudySpec`. A dict's
            `train: "module:function"` is imported from the working directory.
        workers: how many workers; None fills the free resources.
        ray_address: join this Ray cluster instead of starting a local Ray (a Ray this
            process already started is used as it is, and left running).
        wait: return once the study is over (its workers stopped); False returns at once
            (call `Study.wait()`).
        progress: draw the CLI's progress bar while waiting.
        preflight: run the gradient and sanity checks of a built-in model first.

    Returns:
        The study, its master serving until `Study.close()`.

    Raises:
        GridlessError: the spec is invalid, the preflight failed, or no worker fits.
    """
    if workers is not None and not 1 <= workers <= 256:
        raise GridlessError(f"workers: None or a number from 1 to 256, but got {workers!r}")
    with tempfile.TemporaryDirectory(prefix="gridless-spec-") as scratch:
        spec_path = _spec_file(spec, Path(scratch))
        checked = validate(spec_path)
        wire = wire_spec(spec_path, checked)
        parse_spec(wire)
        text = spec_path.read_text(encoding="utf-8")
        paths = import_paths(spec_path) if isinstance(spec, str | Path) else [str(Path.cwd())]
        paths = list(dict.fromkeys(paths + _code_roots(checked)))
    if checked.train is None and preflight:
        report = run_preflight(checked)
        if not report.passed:
            print_preflight(report)
            raise GridlessError(
                "preflight checks failed (above; preflight=False starts the study anyway)"
            )
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    target = (Path(run_dir) / f"{checked.name}-{stamp}").resolve()
    target.mkdir(parents=True, exist_ok=False)
    store_root = prepared_store(store or run_paths(target)[1])
    (target / "spec.yaml").write_text(text, encoding="utf-8")
    spec_record = spec_path if isinstance(spec, str | Path) else target / "spec.yaml"
    record = {
        "spec": str(spec_record.resolve()),
        "import_paths": paths,
        "store": str(store_root),
    }
    (target / RUN_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    try:
        study = _start(
            target, record, wire, workers=workers, ray=(ray_address, ray_cpus, ray_gpus)
        )
    except BaseException:
        if not (target / "gridless.db").is_file():
            shutil.rmtree(target, ignore_errors=True)
        raise
    if wait:
        study.wait(progress=progress)
    return study


def _start(
    target: Path,
    record: dict[str, Any],
    wire: dict[str, Any],
    *,
    workers: int | None,
    ray: tuple[str | None, int | None, int | None],
) -> Study:
    """The master of `target` served in a thread, the study created over HTTP, Ray
    started (or joined) and the workers launched, as `gridless run` does."""
    import ray as ray_api

    from gridless.common.db import make_engine
    from gridless.master.app import create_app
    from gridless.master.launcher import RayLauncher
    from gridless.master.server import BackgroundServer

    url = f"sqlite:///{run_paths(target)[0]}"
    where: dict[str, str] = {}
    app_ = create_app(
        database_url=url,
        store_root=record["store"],
        engine=make_engine(url),
        launcher_factory=lambda: RayLauncher(
            where["url"], str(record["store"]), python_path=record["import_paths"]
        ),
    )
    logging.getLogger("ray").setLevel(logging.ERROR)  # Ray's start-up notices, as the CLI
    server = BackgroundServer(app_).start()
    where["url"] = server.url
    own_ray = not ray_api.is_initialized()
    local = _LocalRun(target, server, app_.state.workers, own_ray)
    local._exit_hook = local.close
    atexit.register(local.close)
    client = ApiClient(server.url)
    try:
        study_id = client.create_study(wire).id
        cpu, gpu = app_.state.protocol.active_resources()
        if own_ray:
            start_ray(ray_api, cpu, workers, ray)
        client.launch_workers(fit_workers(app_.state.workers, workers, cpu, gpu))
        return Study(client, study_id, url=server.url, local=local)
    except BaseException:
        client.close()
        local.close()
        raise


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
