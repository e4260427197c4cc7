"""Trackers: a study's trials logged to MLflow and TensorBoard as they run, for a spec
with `trackers: [mlflow, tensorboard]` (common/spec.py, `TrackerSpec`).

Logging runs on the master, not on the workers: the master has every report of every
trainer (built-in models and `train:` functions alike), the study's spec and its run
directory, where the default MLflow store (`mlruns/`) and TensorBoard logs
(`tensorboard/`) live; a worker on another node has none of these (its file system is
not the run directory's), and one MLflow parent run per study needs one writer. It must
not slow the report path: the hooks (`trial_reported`, `trial_ended`) are one-line calls
in master/reports.py that read what they need inside the writer's transaction and hand
it, after the commit (never for a batch that rolls back), to one background thread over
an unbounded queue. That thread drains the queue in rounds and writes each trial's new
epochs as one `MlflowClient.log_batch` and TensorBoard scalars (tensorboardX's
`SummaryWriter`, no torch needed), so a slow store delays the logs, never a worker.

MLflow: one experiment a study (`experiment`, default the study's name), a parent run
for the study and one nested run a trial (`mlflow.parentRunId`), named `trial-0003`,
tagged `gridless.study_id` / `gridless.trial` / `gridless.stage`, with the trial's
params, every reported metric at `step=epoch`, and its final state (FINISHED for
completed and stopped trials, FAILED for failed and diverged). A resumed run (the same
master again, `gridless resume`) finds its runs by those tags and goes on in them.
MLflow 3 refuses a `file:` store unless `MLFLOW_ALLOW_FILE_STORE=true`; the master sets
that (if unset) for a `file:` URI, since the default store is one.

TensorBoard: `<log_dir>/<study>/trial-0003/`, a scalar a metric at `step=epoch`, and the
params as the run's `params` text.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, object_session

from gridless.common.db import StageRow, StudyRow, TrialRow
from gridless.common.spec import TrackerSpec
from gridless.master.context import cached_get

__all__ = ["TrackerHub", "run_folder", "trial_ended", "trial_reported"]

log = logging.getLogger(__name__)

# MLflow's run states for a trial's final state.
_MLFLOW_STATUS = {
    "completed": "FINISHED",
    "stopped": "FINISHED",
    "failed": "FAILED",
    "diverged": "FAILED",
}


def run_folder(database_url: str) -> Path:
    """Where a master's relative tracker paths start: its SQLite file's folder (the run
    directory), else the working directory."""
    try:
        url = make_url(database_url)
    except Exception:  # an odd URL is the database's business, not ours
        return Path.cwd()
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        return Path(str(url.database)).resolve().parent
    return Path.cwd()


@dataclass(frozen=True)
class _Study:
    """A study as the hub needs it; `trackers` as the stored spec has them (the hub
    parses them once, on its own thread)."""

    id: int
    name: str
    trackers: tuple[dict[str, Any], ...]


@dataclass
class _Event:
    """One trial's news: new epochs (`epoch`, `metrics`) or its end (`state`)."""

    study: _Study
    trial: int
    stage: int | None
    params: dict[str, Any]
    epoch: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    state: str | None = None


def _hub(s: Session | None, study: StudyRow) -> TrackerHub | None:
    if s is None or not (study.spec or {}).get("trackers"):
        return None
    hub = s.info.get("trackers")
    return hub if isinstance(hub, TrackerHub) else None


def _after_commit(s: Session, action: Callable[[], None]) -> None:
    batch = s.info.get("batch")
    if batch is not None:
        batch.after_commit(action)
    else:
        event.listen(s, "after_commit", lambda _session: action(), once=True)


def _event(s: Session, study: StudyRow, trial: TrialRow, **what: Any) -> _Event:
    stage = cached_get(s, StageRow, trial.stage_id) if trial.stage_id is not None else None
    return _Event(
        study=_Study(int(study.id), study.name, tuple((study.spec or {})["trackers"])),
        trial=int(trial.number),
        stage=int(stage.index) + 1 if stage is not None else None,
        params=dict(trial.params or {}),
        **what,
    )


def trial_reported(
    study: StudyRow, trial: TrialRow, epoch: int, metrics: dict[str, float | None]
) -> None:
    """A trial's epoch was stored: log its numbers (the finite ones) after the commit."""
    s = object_session(trial)
    hub = _hub(s, study)
    if s is None or hub is None:
        return
    numbers = {k: float(v) for k, v in metrics.items() if v is not None}
    news = _event(s, study, trial, epoch=epoch, metrics=numbers)
    _after_commit(s, lambda: hub.put(news))


def trial_ended(study: StudyRow, trial: TrialRow) -> None:
    """A trial reached its final state: close its runs after the commit."""
    s = object_session(trial)
    hub = _hub(s, study)
    if s is None or hub is None:
        return
    news = _event(s, study, trial, state=trial.state)
    _after_commit(s, lambda: hub.put(news))


class _MlflowSink:
    """One study's experiment in one MLflow tracking store."""

    def __init__(self, study: _Study, spec: TrackerSpec, base: Path) -> None:
        from mlflow.tracking import MlflowClient

        uri = _resolve_uri(spec.tracking_uri, base)
        if uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = MlflowClient(tracking_uri=uri)
        name = spec.experiment or study.name
        found = self.client.get_experiment_by_name(name)
        self.experiment = found.experiment_id if found else self.client.create_experiment(name)
        tags = {"gridless.study_id": str(study.id), "gridless.role": "study"}
        self.parent = self._run(tags, name=study.name)
        self.study = study
        self.runs: dict[int, str] = {}

    def _run(self, tags: dict[str, str], *, name: str) -> str:
        """The run with these tags (a resumed master's), or a new one."""
        where = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items() if k != "name")
        found = self.client.search_runs([self.experiment], filter_string=where, max_results=1)
        if found:
            return str(found[0].info.run_id)
        return str(self.client.create_run(self.experiment, run_name=name, tags=tags).info.run_id)

    def write(self, events: list[_Event]) -> None:
        from mlflow.entities import Metric, Param

        first = events[0]
        run_id = self.runs.get(first.trial)
        params: list[Param] = []
        if run_id is None:
            tags = {
                "mlflow.parentRunId": self.parent,
                "gridless.study_id": str(self.study.id),
                "gridless.trial": str(first.trial),
            }
            if first.stage is not None:
                tags["gridless.stage"] = str(first.stage)
            run_id = self._run(tags, name=f"trial-{first.trial:04d}")
            self.runs[first.trial] = run_id
            params = [Param(k, str(v)[:6000]) for k, v in sorted(first.params.items())]
        stamp = int(time.time() * 1000)
        metrics = [
            Metric(key, value, stamp, e.epoch)
            for e in events
            if e.epoch is not None
            for key, value in e.metrics.items()
        ]
        for start in range(0, max(len(metrics), 1), 1000):  # MLflow's batch limit
            self.client.log_batch(run_id, metrics=metrics[start : start + 1000], params=params)
            params = []
        ended = next((e.state for e in events if e.state is not None), None)
        if ended is not None:
            self.client.set_terminated(run_id, _MLFLOW_STATUS.get(ended, "KILLED"))
            del self.runs[first.trial]

    def close(self) -> None:
        pass  # MLflow's client holds nothing open


class _TensorBoardSink:
    """One study's trials as TensorBoard log dirs under `<log_dir>/<study>/`."""

    def __init__(self, study: _Study, spec: TrackerSpec, base: Path) -> None:
        folder = Path(spec.log_dir or "tensorboard")
        self.root = (folder if folder.is_absolute() else base / folder) / study.name
        self.writers: dict[int, Any] = {}

    def write(self, events: list[_Event]) -> None:
        from tensorboardX import SummaryWriter

        first = events[0]
        writer = self.writers.get(first.trial)
        if writer is None:
            writer = SummaryWriter(logdir=str(self.root / f"trial-{first.trial:04d}"))
            writer.add_text("params", json.dumps(first.params, sort_keys=True, default=str))
            self.writers[first.trial] = writer
        for e in events:
            for key, value in e.metrics.items():
                writer.add_scalar(key, value, global_step=e.epoch)
        writer.flush()
        if any(e.state is not None for e in events):
            writer.close()
            del self.writers[first.trial]

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers.clear()


_SINKS: dict[str, Callable[[_Study, TrackerSpec, Path], Any]] = {
    "mlflow": _MlflowSink,
    "tensorboard": _TensorBoardSink,
}


def _resolve_uri(uri: str | None, base: Path) -> str:
    """An MLflow tracking URI with relative paths (`mlruns`, `file:mlruns`) under `base`."""
    if uri is None:
        return (base / "mlruns").as_uri()
    if uri.startswith("file:") and not uri.startswith("file:/"):
        return (base / uri.removeprefix("file:")).resolve().as_uri()
    if "://" not in uri and ":" not in uri.split("/")[0]:
        return (base / uri).resolve().as_uri()
    return uri


class TrackerHub:
    """The background thread that writes the trackers' logs of a master's studies.

    Args:
        base: where relative `tracking_uri` and `log_dir` start (`run_folder`).
    """

    def __init__(self, base: Path) -> None:
        self.base = base
        self._queue: queue.SimpleQueue[_Event | threading.Event | None] = queue.SimpleQueue()
        self._sinks: dict[tuple[int, str], Any] = {}
        self._specs: dict[int, list[TrackerSpec]] = {}
        self._broken: set[tuple[int, str]] = set()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.written = 0  # events written (for tests and logs)

    def put(self, news: _Event) -> None:
        """Queue one trial's news; never blocks."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, daemon=True, name="trackers")
                self._thread.start()
        self._queue.put(news)

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until what is queued now is written; whether it was in time."""
        done = threading.Event()
        with self._lock:
            if self._thread is None:
                return True
        self._queue.put(done)
        return done.wait(timeout_s)

    def close(self, timeout_s: float = 30.0) -> None:
        """Write what is queued, close the log files, stop the thread."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout_s)

    def _loop(self) -> None:
        while True:
            taken = [self._queue.get()]
            with contextlib.suppress(queue.Empty):
                while len(taken) < 10_000:
                    taken.append(self._queue.get_nowait())
            self._write([e for e in taken if isinstance(e, _Event)])
            for marker in taken:
                if isinstance(marker, threading.Event):
                    marker.set()
            if None in taken:
                for sink in self._sinks.values():
                    with contextlib.suppress(Exception):
                        sink.close()
                return

    def _write(self, events: list[_Event]) -> None:
        """Each trial's events, in order, to each tracker of its study."""
        by_trial: dict[tuple[int, int], list[_Event]] = {}
        for e in events:
            by_trial.setdefault((e.study.id, e.trial), []).append(e)
        for group in by_trial.values():
            study = group[0].study
            specs = self._specs.get(study.id)
            if specs is None:
                try:
                    specs = [TrackerSpec.model_validate(raw) for raw in study.trackers]
                except ValueError as exc:  # the library went away since the spec was checked
                    log.warning("trackers of study %s: %s", study.name, exc)
                    specs = []
                self._specs[study.id] = specs
            for spec in specs:
                key = (study.id, spec.kind)
                if key in self._broken:
                    continue
                try:
                    sink = self._sinks.get(key)
                    if sink is None:
                        sink = self._sinks[key] = _SINKS[spec.kind](study, spec, self.base)
                    sink.write(group)
                except Exception as exc:  # a tracker's store failing costs its logs only
                    log.warning(
                        "trackers: %s of study %s stopped logging: %s: %s",
                        spec.kind,
                        study.name,
                        exc.__class__.__name__,
                        exc,
                    )
                    self._broken.add(key)
                    self._sinks.pop(key, None)
            self.written += len(group)
