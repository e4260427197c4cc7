"""A trial's stdout and stderr, kept in `trial.log` beside its checkpoints.

While a trial runs, `sys.stdout` and `sys.stderr` go both where they went before (Ray's
worker log) and into the trial's log, which reaches the store every few seconds while it
changes and at the end, so the API (`GET /api/v1/trials/{id}/log`), `gridless logs` and
the dashboard show what the user's code printed. A resumed attempt appends to the log of
the attempts before it. Output written below Python (C extensions writing to file
descriptor 1) is not captured.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import sys
import threading
from types import TracebackType
from typing import TextIO

from gridless.common.checkpoints import CheckpointStore
from gridless.common.errors import GridlessError

__all__ = ["TrialLog", "flush_current"]

log = logging.getLogger(__name__)

LIMIT = 1 << 20  # keep the last MiB: a chatty loop must not fill the store
EVERY_S = 1.0  # how often a running trial's log is written, when it changed


class _Tee(io.TextIOBase):
    def __init__(self, original: TextIO, sink: TrialLog) -> None:
        self.original, self.sink = original, sink

    def write(self, text: str) -> int:
        self.sink.append(text)
        return self.original.write(text)

    def flush(self) -> None:
        self.original.flush()


class TrialLog:
    """Capture one attempt's output into its trial's log (a context manager)."""

    def __init__(self, store: CheckpointStore, study: str, folder: str, header: str) -> None:
        self.store, self.study, self.folder = store, study, folder
        self._lock = threading.Lock()
        try:
            before = store.read_log(study, folder).decode("utf-8", "replace")
        except GridlessError:
            before = ""
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        self._text = before + f"=== {header}, {now} ===\n"
        self._dirty = True
        self._saved: tuple[TextIO, TextIO] | None = None
        self._stop = threading.Event()
        self._writer = threading.Thread(target=self._every, daemon=True, name="trial-log")

    def _every(self) -> None:
        while not self._stop.wait(EVERY_S):
            self.flush()

    def append(self, text: str) -> None:
        with self._lock:
            self._text = (self._text + text)[-LIMIT:]
            self._dirty = True

    def flush(self) -> None:
        """Write the log to the store if it changed; a store error costs the log only."""
        with self._lock:
            if not self._dirty:
                return
            data, self._dirty = self._text.encode("utf-8", "replace"), False
        try:
            self.store.write_log(self.study, self.folder, data)
        except GridlessError as exc:
            log.warning("trial %s: cannot write its log: %s", self.folder, exc)

    def __enter__(self) -> TrialLog:
        _current.append(self)
        self._saved = (sys.stdout, sys.stderr)
        sys.stdout = _Tee(sys.stdout, self)
        sys.stderr = _Tee(sys.stderr, self)
        self._writer.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._saved is not None:
            sys.stdout, sys.stderr = self._saved
        if self in _current:
            _current.remove(self)
        self._stop.set()
        if self._writer.is_alive():
            self._writer.join()
        self.flush()


_current: list[TrialLog] = []


def flush_current() -> None:
    """Write the running trial's log now (before each report and before the trial ends,
    so that a worker killed right after, by Ctrl-C or a pause, loses none of it)."""
    for trial_log in list(_current):
        trial_log.flush()
