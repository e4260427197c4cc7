"""A worker's heartbeat: a thread that tells the master, every interval, that the worker
and its current trial are alive; the answer can ask the trial to stop."""

from __future__ import annotations

import logging
import threading

from gridless.common.messages import HeartbeatRequest
from gridless.worker.client import MasterClient, MasterGone, TrialClosed

__all__ = ["Heartbeat"]

log = logging.getLogger(__name__)


class Heartbeat:
    """Sends heartbeats on its own HTTP client until `stop()`."""

    def __init__(self, client: MasterClient, worker_id: str, interval_s: float) -> None:
        self.client = client
        self.worker_id = worker_id
        self.interval_s = interval_s
        self._trial: tuple[int, int] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.stop_trial = threading.Event()  # set when the master asks the trial to stop
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def watch(self, trial_id: int | None, attempt: int | None = None) -> None:
        """The trial this worker is running now (None between trials)."""
        with self._lock:
            self._trial = None if trial_id is None else (trial_id, attempt or 0)
            self.stop_trial.clear()

    def beat(self) -> None:
        with self._lock:
            trial = self._trial
        request = HeartbeatRequest(
            worker_id=self.worker_id,
            trial_id=trial[0] if trial else None,
            attempt=trial[1] if trial else None,
        )
        ack = self.client.heartbeat(request)
        with self._lock:
            # the worker may have moved on while the beat was in flight: a "stop" about
            # the previous trial must not stop the next one
            if ack.stop and trial is not None and self._trial == trial:
                self.stop_trial.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.beat()
            except (MasterGone, TrialClosed, RuntimeError) as exc:
                log.debug("heartbeat failed: %s", exc)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.client.close()
