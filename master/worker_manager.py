"""The worker manager: launch, kill and list workers, and notice the ones that die.

A dead worker is noticed two ways: its Ray actor ends with an error (checked every
monitor tick), or its heartbeats stop (the reaper, after 3 heartbeat intervals). Either
way its trial is marked lost and the next claim resumes it, from its latest checkpoint,
on another worker.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from gridless.common.errors import ConflictError, NotFoundError
from gridless.master.launcher import WorkerLauncher
from gridless.master.protocol import TrialProtocol

__all__ = ["Monitor", "WorkerManager"]

log = logging.getLogger(__name__)


class WorkerManager:
    """Owns the launcher (created on first use: starting Ray takes seconds)."""

    def __init__(
        self, protocol: TrialProtocol, launcher_factory: Callable[[], WorkerLauncher] | None
    ) -> None:
        self.protocol = protocol
        self._factory = launcher_factory
        self._launcher: WorkerLauncher | None = None
        self._lock = threading.Lock()

    @property
    def launcher(self) -> WorkerLauncher:
        with self._lock:
            if self._launcher is None:
                if self._factory is None:
                    raise ConflictError("this master launches no workers (no launcher configured)")
                self._launcher = self._factory()
            return self._launcher

    def launch(self, count: int) -> list[str]:
        """Start `count` workers sized by the running study's `resources`."""
        cpu, gpu = self.protocol.active_resources()
        return self.launcher.launch(count, cpu=cpu, gpu=gpu)

    def kill(self, worker_id: str) -> None:
        """Kill one worker; its trial is lost at once and resumes elsewhere.

        Raises:
            NotFoundError: when this master runs no such worker.
        """
        if worker_id not in self.alive():
            raise NotFoundError(f"no running worker {worker_id!r}")
        try:
            self.launcher.kill(worker_id)
        except NotImplementedError as exc:
            raise ConflictError(str(exc)) from None
        self.protocol.worker_gone(worker_id, "killed")

    def kill_all(self) -> list[str]:
        killed = self.alive()
        for worker_id in killed:
            self.kill(worker_id)
        return killed

    def alive(self) -> list[str]:
        return self._launcher.alive() if self._launcher is not None else []

    def poll(self) -> None:
        """Mark the trials of workers that died as lost; clean exits just leave."""
        if self._launcher is None:
            return
        for worker_id, error in self._launcher.ended():
            if error is None:
                self.protocol.worker_gone(worker_id, "exited")
            else:
                lost = self.protocol.worker_gone(worker_id, "dead")
                log.warning("worker %s died (%s); %d trial(s) lost", worker_id, error, len(lost))

    def shutdown(self) -> None:
        if self._launcher is not None:
            self._launcher.shutdown()


class Monitor:
    """A timer thread: reaps trials without heartbeats, notices dead workers and closes
    stages whose last trial finished while their study was paused."""

    def __init__(self, protocol: TrialProtocol, workers: WorkerManager, interval_s: float) -> None:
        self.protocol = protocol
        self.workers = workers
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gridless-monitor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def tick(self) -> None:
        self.workers.poll()
        self.protocol.reap()
        self.protocol.advance_stages()

    def _run(self) -> None:
        # After a (re)start, heartbeats in the database predate this process: give the
        # workers one grace period to reconnect before judging them silent.
        started = time.monotonic()
        grace = self.protocol.context.grace_s
        while not self._stop.wait(self.interval_s):
            try:
                self.workers.poll()
                if time.monotonic() - started >= grace:
                    self.protocol.reap()
                self.protocol.advance_stages()  # a study resumed after its stage filled
            except Exception:  # a failed tick must not end the timer
                log.exception("monitor tick failed")
