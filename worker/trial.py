"""`gridless.Trial`: what the user's own training function receives.

A study names a function (`train: "module:function"`); each trial calls it with a
`Trial`. The function reads `trial.params`, sizes its schedules from `trial.max_epochs`,
loops over `trial.epochs()`, and ends each epoch with one call,
`trial.report(epoch, checkpoint=state, **metrics)`: the epoch's named numbers and, when
given, its checkpoint, written before the master decides whether the trial goes on, so
the epoch that stops a trial keeps its model. `trial.save(state)` right after a report
(the older form) still lands: a report travels to the master when its epoch is over (with
its checkpoint, at the next epoch, the next report, or the function's return), and the
stop it brings is raised then. `TrialStopped` ends the trial when the master ends it
(early stopping, a stop rule, a stopped study) or the loss is not finite (divergence);
the runtime catches it, so the loop stays a plain loop. Constructed directly,
`Trial(params, max_epochs=..., checkpoint_dir=...)` runs without a master: the same
script then runs as a plain script, printing its reports and resuming from the newest
checkpoint in `checkpoint_dir`.
"""

from __future__ import annotations

import io
import json
import logging
import math
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import numpy as np

from gridless.common.checkpoint_files import npz_writer, pt_writer, read_npz, read_pt
from gridless.common.checkpoints import format_name
from gridless.common.metric import check_metric_name

__all__ = ["Trial", "TrialStopped", "Written", "load_state", "state_writer"]

log = logging.getLogger(__name__)

_STATE = "state/"


class TrialStopped(Exception):
    """The trial ends now: the master stopped it, or it diverged (`state`).

    Raised by `Trial.report`; the gridless runtime catches it. A function that catches it
    itself should re-raise it.
    """

    def __init__(self, reason: str, *, state: str = "stopped") -> None:
        super().__init__(reason)
        self.reason = reason
        self.state = state


@dataclass(frozen=True)
class Written:
    """A checkpoint file a backend wrote: its path (what `save` returns), size and hash."""

    path: str
    size: int = 0
    sha256: str = ""


class Backend(Protocol):
    """Where a trial's reports and checkpoints go: the master, or the local console."""

    metric: str | None
    first_epoch: int
    # Whether a report waits for its epoch's end to travel (with a `save` that follows
    # it): the master's backend, so that a report and its checkpoint are one message.
    deferred: bool

    def send(
        self,
        epoch: int,
        metrics: dict[str, float | None],
        diverged: str | None,
        *,
        stats: dict[str, Any] | None = None,
        warnings: list[dict[str, Any]] | None = None,
        checkpoint: Written | None = None,
    ) -> bool:
        """Send one epoch's numbers (with `watch()`'s statistics, the babysitting
        warnings and the epoch's checkpoint); True when the trial must stop."""
        ...

    def write(
        self,
        epoch: int,
        score: float | None,
        suffix: str,
        writer: Callable[[BinaryIO], None],
        *,
        reported: Iterable[str],
    ) -> Written | None:
        """Write a checkpoint file of `epoch` (`reported`: the names the epoch reported);
        None if not written."""
        ...

    def attach(self, epoch: int, checkpoint: Written) -> None:
        """Record a checkpoint of an epoch whose report was sent already."""
        ...

    def resume_file(self) -> Path | None:
        """The checkpoint a resumed trial restores, or None."""
        ...


class Trial:
    """One trial of a study, as the user's training function sees it.

    Args:
        params: the hyperparameters (a plain run passes its defaults).
        max_epochs: the epoch budget of the trial's stage, known before the first epoch.
        number: the trial's number within its study.
        seed: a seed for the trial's own randomness (the study seed and trial number).
        stage: the 1-based stage of the coarse-to-fine search.
        device: `"cpu"` (or the device the trial was given).
        metric: the name of the study's metric (used to name checkpoints).
        checkpoint_dir: a plain run writes `save()`'s checkpoints here (none when None).
        subset: True under `gridless check`: train on a few examples only.
        backend: where reports go; the gridless runtime passes the master's.
    """

    def __init__(
        self,
        params: Mapping[str, Any] | None = None,
        *,
        max_epochs: int = 1,
        number: int = 0,
        seed: int = 0,
        stage: int = 1,
        device: str = "cpu",
        metric: str | None = None,
        checkpoint_dir: str | Path | None = None,
        subset: bool = False,
        backend: Backend | None = None,
    ) -> None:
        if isinstance(max_epochs, bool) or not isinstance(max_epochs, int) or max_epochs < 1:
            raise ValueError(f"max_epochs must be an integer >= 1, but got {max_epochs!r}")
        self._params = dict(params or {})
        self._max_epochs = max_epochs
        self._number = number
        self._seed = seed
        self._stage = stage
        self._device = device
        self._subset = subset
        self.subset_read = False  # whether the function looked at `subset`
        self._backend: Backend = backend or LocalBackend(metric, checkpoint_dir)
        self._first = 1  # after restore(): the epoch after the restored one
        self._epoch = 0  # the epoch being trained
        self._reported: dict[int, dict[str, float]] = {}
        self._pending: tuple[str, Callable[[BinaryIO], None]] | None = None
        self._unsent: _Report | None = None  # a report waiting for its epoch's end
        self._saved: set[int] = set()  # epochs with a checkpoint written
        self._watch: Any = None  # a gridless.worker.watch.Watch once watch() was called
        self._history: list[Any] = []  # EpochMetrics of the reports, for the warnings

    # -- what the function reads -------------------------------------------------------

    @property
    def params(self) -> dict[str, Any]:
        """The trial's hyperparameters (searched and fixed), by name."""
        return self._params

    @property
    def max_epochs(self) -> int:
        """The epoch budget of this trial's stage: size schedules from it."""
        return self._max_epochs

    @property
    def number(self) -> int:
        """The trial's number within its study (the number the CLI and API show)."""
        return self._number

    @property
    def seed(self) -> int:
        """A seed for this trial's randomness: derived from the study seed and the number."""
        return self._seed

    @property
    def stage(self) -> int:
        """The 1-based stage of the coarse-to-fine search this trial belongs to."""
        return self._stage

    @property
    def device(self) -> str:
        """The device to train on: `"cpu"`, or `"cuda"` when the trial was given a GPU."""
        return self._device

    @property
    def subset(self) -> bool:
        """True when `gridless check` runs the function: use a tiny subset of the data
        (20 examples, say) so the smoke run takes seconds."""
        self.subset_read = True
        return self._subset

    @property
    def metric(self) -> str | None:
        """The name of the study's metric (None in a plain run that did not name one)."""
        return self._backend.metric

    def epochs(self) -> Iterator[int]:
        """The epoch numbers still to run, 1-based; after the restored epoch once
        `restore()` returned a lost trial's state (without it, training starts over)."""
        for epoch in range(self._first, self._max_epochs + 1):
            self.settle()  # the previous epoch is over: its report leaves (or stops us)
            self._epoch = epoch
            yield epoch
        self.settle()

    # -- what the function tells ---------------------------------------------------------

    def watch(self, model: Any, optimizer: Any = None, *, every: int = 10) -> Any:
        """Babysit a Torch model as gridless babysits its own: update:weight ratios per
        parameter (from `optimizer`'s steps), activation and gradient statistics per
        hidden layer, first-layer filters, and the warnings they raise (learning rate
        too high or too low, vanishing or exploding activations), sent with each report.

        Hooks sample one training step in `every`; statistics stay on the model's device
        until the report. Returns the monitor; the runtime removes its hooks at the end.

        Raises:
            TypeError: when `model` is not a `torch.nn.Module` (or `optimizer` not a
                `torch.optim.Optimizer`).
        """
        from gridless.worker.watch import Watch

        if self._watch is not None:
            self._watch.close()
        self._watch = Watch(model, optimizer, every=every)
        return self._watch

    def close(self) -> None:
        """Remove `watch()`'s hooks (the runtime calls it when the function returns)."""
        if self._watch is not None:
            self._watch.close()
            self._watch = None

    def report(
        self,
        epoch: int | None = None,
        /,
        *,
        checkpoint: Mapping[str, Any] | None = None,
        **metrics: Any,
    ) -> None:
        """End an epoch: its metrics (any named numbers, e.g. `val_loss=0.41, val_r2=0.87`)
        and, with `checkpoint=`, its state (as `save` takes it), written before the
        master decides whether the trial goes on.

        With the master, a report without a checkpoint travels when the epoch is over:
        with a `save` of the same epoch, at the next epoch of `epochs()`, at the next
        report or when the function returns; the stop it brings is raised there.

        Raises:
            TrialStopped: when the master ends the trial, or a loss is NaN or infinite
                (or the study's metric is, with no finite loss reported): the trial is
                then `diverged`.
            ValueError, TypeError: for a bad epoch, name, value or checkpoint.
        """
        self.settle()  # an earlier epoch's report that still waits goes first
        epoch = self._epoch_of(epoch)
        if not metrics:
            raise ValueError("trial.report needs at least one metric, e.g. val_loss=0.4")
        numbers = {name: _number(name, value) for name, value in metrics.items()}
        if epoch in self._reported:
            raise ValueError(
                f"trial.report: epoch {epoch} was reported already; report each epoch once, "
                "with all its metrics"
            )
        # a bad state is refused before anything of the epoch is recorded
        writer = (
            state_writer(checkpoint, self._meta(epoch, numbers))
            if checkpoint is not None
            else None
        )
        self._reported[epoch] = numbers
        self._epoch = epoch
        diverged = _divergence(numbers, self._backend.metric, epoch)
        stats = self._watch.collect() if self._watch is not None else {}
        warnings = self._warnings(epoch, numbers, stats, diverged=diverged is not None)
        warnings.extend(_undefined_metric(numbers, self._backend.metric, epoch, diverged))
        report = _Report(
            epoch,
            {k: (v if math.isfinite(v) else None) for k, v in numbers.items()},
            stats,
            warnings,
        )
        if diverged is not None:
            self._pending = None
            self._backend.send(epoch, report.metrics, diverged, stats=stats, warnings=warnings)
            raise TrialStopped(diverged, state="diverged")
        if writer is None and self._pending is not None:
            writer = self._pending  # a save() before this report
        self._pending = None
        written = self._write(epoch, *writer) if writer is not None else None
        if written is None and self._backend.deferred:
            self._unsent = report  # a save() may follow: they travel together
            return
        self._send(report, written)

    def save(self, state: Mapping[str, Any]) -> str | None:
        """Checkpoint `state` (a Torch state dict, or a dict of NumPy arrays and numbers).

        `trial.report(epoch, checkpoint=state, ...)` does the same in the report. Called
        after `report` for the epoch, the checkpoint travels with that report (even the
        one that stops the trial: `TrialStopped` is then raised here); called before, the
        state is kept and written with the report. Torch tensors make a `.pt` file that
        loads with `torch.load(..., weights_only=True)`, anything else an `.npz`; never a
        pickle. Returns the path written, when written now.

        Raises:
            TrialStopped: when the report this checkpoint completes ends the trial.
        """
        suffix, writer = state_writer(state, self._meta(self._epoch))
        if self._epoch in self._reported:
            written = self._write(self._epoch, suffix, writer)
            unsent = self._unsent
            if unsent is not None and unsent.epoch == self._epoch:
                self._unsent = None
                self._send(unsent, written)
            elif written is not None:
                self._backend.attach(self._epoch, written)
            return written.path if written is not None else None
        # Not reported yet: keep a copy, since the caller goes on changing its tensors.
        snapshot = io.BytesIO()
        writer(snapshot)

        def write_snapshot(handle: BinaryIO) -> None:
            handle.write(snapshot.getvalue())

        self._pending = (suffix, write_snapshot)
        return None

    def settle(self) -> None:
        """Send the report that waits for its epoch's end, if one does (the runtime calls
        it when the function returns).

        Raises:
            TrialStopped: when that report ends the trial.
        """
        if self._unsent is not None:
            report, self._unsent = self._unsent, None
            self._send(report, None)

    @property
    def saved_epochs(self) -> set[int]:
        """The epochs whose checkpoint was written."""
        return self._saved

    def restore(self) -> Any | None:
        """The state of the latest intact checkpoint of this trial, or None (a new trial)."""
        path = self._backend.resume_file()
        if path is None:
            return None
        state = load_state(path, device=self._device)
        self._first = self._backend.first_epoch
        return state

    # -- runtime ---------------------------------------------------------------------------

    @property
    def reported(self) -> dict[int, dict[str, float]]:
        """Every epoch's reported numbers so far (the runtime reads it at the end)."""
        return self._reported

    def _epoch_of(self, epoch: int | None) -> int:
        if epoch is None:
            return max(self._epoch, max(self._reported, default=0) + 1, 1)
        if isinstance(epoch, bool) or not isinstance(epoch, int | np.integer):
            raise TypeError(f"trial.report: epoch must be an int, but got {epoch!r}")
        if not 1 <= int(epoch) <= 1_000_000:
            raise ValueError(f"trial.report: epoch must be in [1, 1000000], but got {epoch}")
        return int(epoch)

    def _warnings(
        self, epoch: int, numbers: Mapping[str, float], stats: dict[str, Any], *, diverged: bool
    ) -> list[dict[str, Any]]:
        """The built-in models' babysitting rules on this epoch's report and statistics."""
        from gridless.worker.diagnostics.babysit import epoch_warnings
        from gridless.worker.trainer import EpochMetrics

        def get(*names: str) -> float | None:
            return next((numbers[n] for n in names if n in numbers), None)

        train_loss, val_loss = get("train_loss", "loss"), get("val_loss")
        # accuracies as fractions (a function may report percentages: then no such rule)
        accuracies = tuple(
            a if a is not None and 0.0 <= a <= 1.0 else None
            for a in (get("train_accuracy"), get("val_accuracy"))
        )
        self._history.append(
            EpochMetrics(
                train_loss=train_loss if train_loss is not None else math.nan,
                train_accuracy=accuracies[0],
                val_loss=val_loss if val_loss is not None else math.nan,
                val_accuracy=accuracies[1],
                seconds=0.0,
                diverged=diverged,
                # the rules read a loss history: a function reports one loss an epoch
                stats={
                    **stats,
                    "loss_history": [train_loss]
                    if train_loss is not None and math.isfinite(train_loss)
                    else [],
                },
                metrics=dict(numbers),
            )
        )
        found = epoch_warnings(self._history, num_classes=None, chance_loss=None)
        # divergence has its own finding, with the value that diverged
        return [{**w.to_json(), "epoch": epoch} for w in found if w.code != "diverged"]

    def _meta(self, epoch: int, numbers: Mapping[str, float] | None = None) -> dict[str, Any]:
        shown = numbers if numbers is not None else self._reported.get(epoch, {})
        return {
            "trial_number": self._number,
            "epoch": epoch,
            "params": _jsonable(self._params),
            "metrics": {k: v for k, v in shown.items() if math.isfinite(v)},
        }

    def _write(
        self, epoch: int, suffix: str, writer: Callable[[BinaryIO], None]
    ) -> Written | None:
        metric = self._backend.metric
        numbers = self._reported[epoch]
        score = numbers.get(metric) if metric is not None else None
        if score is not None and not math.isfinite(score):
            score = None
        written = self._backend.write(epoch, score, suffix, writer, reported=numbers)
        if written is not None:
            self._saved.add(epoch)
        return written

    def _send(self, report: _Report, written: Written | None) -> None:
        stop = self._backend.send(
            report.epoch,
            report.metrics,
            None,
            stats=report.stats,
            warnings=report.warnings,
            checkpoint=written,
        )
        if stop:
            raise TrialStopped("stopped by the master (early stopping, a stop rule, or a stop)")


@dataclass
class _Report:
    """One epoch's report as it travels: finite numbers (None for the others),
    `watch()`'s statistics and the warnings."""

    epoch: int
    metrics: dict[str, float | None]
    stats: dict[str, Any]
    warnings: list[dict[str, Any]]


class LocalBackend:
    """A trial without a master: reports go to stderr, checkpoints to a folder if given,
    and `restore()` returns the newest checkpoint in that folder (a plain script resumes
    from its own checkpoints, as it would without gridless)."""

    first_epoch = 1
    deferred = False

    def __init__(self, metric: str | None, checkpoint_dir: str | Path | None) -> None:
        self.metric = metric
        self.folder = Path(checkpoint_dir) if checkpoint_dir is not None else None

    def send(
        self,
        epoch: int,
        metrics: dict[str, float | None],
        diverged: str | None,
        *,
        stats: dict[str, Any] | None = None,
        warnings: list[dict[str, Any]] | None = None,
        checkpoint: Written | None = None,
    ) -> bool:
        shown = "  ".join(f"{k} {_shown(v)}" for k, v in metrics.items())
        print(f"epoch {epoch}  {shown}", file=sys.stderr)  # noqa: T201 (a plain run's output)
        if diverged:
            print(diverged, file=sys.stderr)  # noqa: T201
        for warning in warnings or []:
            print(f"warning: {warning['message']}", file=sys.stderr)  # noqa: T201
        return False

    def write(
        self,
        epoch: int,
        score: float | None,
        suffix: str,
        writer: Callable[[BinaryIO], None],
        *,
        reported: Iterable[str] = (),
    ) -> Written | None:
        if self.folder is None:
            return None
        self.folder.mkdir(parents=True, exist_ok=True)
        if score is not None and self.metric is not None:
            name = format_name(score, epoch, metric=self.metric, suffix=suffix)
        else:
            name = f"ep{epoch:03d}.{suffix}"
        path = self.folder / name
        with path.open("wb") as handle:
            writer(handle)
        return Written(str(path))

    def attach(self, epoch: int, checkpoint: Written) -> None:
        """Nothing to tell: the file is the record."""

    def resume_file(self) -> Path | None:
        """The newest epoch's checkpoint in the folder (its epoch becomes `first_epoch`
        minus one), or None."""
        newest: tuple[int, Path] | None = None
        for path in (
            self.folder.iterdir() if self.folder is not None and self.folder.is_dir() else ()
        ):
            epoch = _epoch_of_name(path.name)
            if epoch is not None and (newest is None or epoch > newest[0]):
                newest = (epoch, path)
        if newest is None:
            return None
        self.first_epoch = newest[0] + 1
        return newest[1]


def _epoch_of_name(name: str) -> int | None:
    """The epoch a plain run's checkpoint name carries (`val0.9731_ep012.npz`, `ep012.pt`)."""
    found = re.fullmatch(r"(?:.+_)?ep(\d{3,7})\.(?:npz|pt)", name)
    return int(found.group(1)) if found else None


def _shown(value: float | None) -> str:
    return "nan" if value is None else f"{value:.4g}"


def _number(name: str, value: Any) -> float:
    check_metric_name(name, where=f"trial.report: {name}")
    if isinstance(value, bool) or value is None:
        raise TypeError(f"trial.report: {name} must be a number, but got {value!r}")
    try:
        return float(value)  # ints, floats, NumPy scalars, 0-d Torch tensors
    except (TypeError, ValueError):
        raise TypeError(
            f"trial.report: {name} must be a number, but got {type(value).__name__}"
        ) from None


def _divergence(numbers: Mapping[str, float], metric: str | None, epoch: int) -> str | None:
    """Why the epoch counts as divergence: a non-finite loss, or a non-finite objective
    with no finite loss to show that training itself went on (CS231n: a NaN loss is the
    sign of a learning rate too high; a NaN F1 of a finite loss is a metric undefined)."""
    losses = {name: value for name, value in numbers.items() if "loss" in name}
    for name, value in losses.items():
        if not math.isfinite(value):
            return f"{name} is {value} at epoch {epoch}: the trial diverged"
    objective = numbers.get(metric) if metric is not None else None
    if objective is not None and not math.isfinite(objective) and not losses:
        return f"{metric} is {objective} at epoch {epoch}: the trial diverged"
    return None


def _undefined_metric(
    numbers: Mapping[str, float], metric: str | None, epoch: int, diverged: str | None
) -> list[dict[str, Any]]:
    """A finding for an objective that is not finite while the losses are: the epoch has
    no score, and it is no evidence about the learning rate."""
    value = numbers.get(metric) if metric is not None else None
    if diverged is not None or value is None or math.isfinite(value):
        return []
    message = (
        f"{metric} is {value} at epoch {epoch} while the losses are finite: the epoch has no "
        "score (a metric undefined on these predictions, e.g. F1 with no positive one), not "
        "divergence"
    )
    return [{"code": "metric_undefined", "message": message, "epoch": epoch}]


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return {k: str(v) for k, v in dict(value).items()}
    return value


# -- the checkpoint format of a function trial ------------------------------------------


def _has_tensor(value: Any) -> bool:
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        return True
    if isinstance(value, Mapping):
        return any(_has_tensor(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_has_tensor(v) for v in value)
    return False


def state_writer(
    state: Mapping[str, Any], meta: Mapping[str, Any]
) -> tuple[str, Callable[[BinaryIO], None]]:
    """The suffix and the writer of a checkpoint of `state`.

    Torch: `{"state": state, "meta": JSON}` through `torch.save` (loads with
    `weights_only=True`). NumPy: an `.npz` with `state/<key>/<key>...` arrays and a JSON
    `__meta__`, written with `allow_pickle=False`.

    Raises:
        TypeError: for a state that is not a mapping, or holds what neither format keeps.
    """
    if not isinstance(state, Mapping):
        raise TypeError(f"trial.save: state must be a dict, but got {type(state).__name__}")
    if _has_tensor(state):
        return "pt", pt_writer({"state": dict(state)}, meta)
    return "npz", npz_writer({f"{_STATE}{key}": value for key, value in _flatten(state, "")}, meta)


def _flatten(state: Mapping[str, Any], prefix: str) -> Iterator[tuple[str, np.ndarray]]:
    for key, value in state.items():
        if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z0-9_.\-]+", key):
            raise TypeError(f"trial.save: keys must be plain strings, but got {key!r}")
        if isinstance(value, Mapping):
            yield from _flatten(value, f"{prefix}{key}/")
            continue
        array = np.asarray(value)
        if array.dtype == object:
            raise TypeError(
                f"trial.save: {prefix}{key} is a {type(value).__name__}; an .npz holds "
                "arrays and numbers (use Torch tensors for a .pt)"
            )
        yield f"{prefix}{key}", array


def load_state(path: str | Path, *, device: str = "cpu") -> Any:
    """The state a function trial saved at `path` (`.pt` or `.npz`), without pickle."""
    path = Path(path)
    if path.suffix == ".pt":
        fields, _ = read_pt(path, map_location=device)
        return fields["state"]
    state: dict[str, Any] = {}
    arrays, _ = read_npz(path)
    for key, value in arrays.items():
        if not key.startswith(_STATE):
            continue
        *folders, leaf = key[len(_STATE) :].split("/")
        node = state
        for folder in folders:
            node = node.setdefault(folder, {})
        node[leaf] = value.item() if value.ndim == 0 else value
    return state
