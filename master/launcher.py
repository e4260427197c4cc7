"""Launching and killing workers behind one small protocol.

`RayLauncher` starts real Ray actors (local Ray or a cluster address); `ThreadLauncher`
runs the same worker loop in threads of this process, for unit tests only.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
from typing import Any, Protocol

__all__ = ["RayLauncher", "ThreadLauncher", "WorkerLauncher"]

log = logging.getLogger(__name__)


class WorkerLauncher(Protocol):
    """Starts and stops workers that talk to the master at `master_url`."""

    def launch(self, count: int) -> list[str]:
        """Start `count` workers; returns their ids."""
        ...

    def kill(self, worker_id: str) -> None:
        """Stop one worker at once (its trial is lost and resumed elsewhere)."""
        ...

    def alive(self) -> list[str]:
        """Ids of the workers still running."""
        ...

    def shutdown(self) -> None:
        """Stop every worker."""
        ...


class RayLauncher:
    """Workers as Ray actors (`worker.actor.WorkerActor`), one CPU each."""

    def __init__(
        self,
        master_url: str,
        store_root: str,
        *,
        token: str | None = None,
        prefix: str = "w",
        python_path: list[str] | None = None,
    ) -> None:
        self.master_url = master_url
        self.store_root = store_root
        self.token = token
        self.prefix = prefix
        # Folders the workers import custom models from (`model: "module:factory"`).
        self.python_path = list(python_path or [])
        self._ids = itertools.count(1)
        self._actors: dict[str, Any] = {}
        self._runs: dict[str, Any] = {}

    def launch(self, count: int) -> list[str]:
        from worker.actor import WorkerActor

        env = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
        paths = [*self.python_path, *filter(None, [os.environ.get("PYTHONPATH")])]
        if paths:
            env["PYTHONPATH"] = os.pathsep.join(paths)
        started = []
        for _ in range(count):
            worker_id = f"{self.prefix}{next(self._ids)}"
            actor = WorkerActor.options(  # type: ignore[attr-defined]
                runtime_env={"env_vars": env}
            ).remote(self.master_url, self.store_root, worker_id, self.token)
            self._actors[worker_id] = actor
            self._runs[worker_id] = actor.run.remote()
            started.append(worker_id)
        return started

    def kill(self, worker_id: str) -> None:
        import ray

        actor = self._actors.pop(worker_id, None)
        self._runs.pop(worker_id, None)
        if actor is not None:
            ray.kill(actor, no_restart=True)

    def alive(self) -> list[str]:
        import ray

        if not self._runs:
            return []
        refs = list(self._runs.values())
        done, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        finished = set(done)
        for worker_id, ref in list(self._runs.items()):
            if ref in finished:
                try:
                    ray.get(ref)
                except Exception as exc:  # report it; the master carries on
                    log.warning("worker %s ended with an error: %s", worker_id, exc)
                del self._runs[worker_id]
                self._actors.pop(worker_id, None)
        return list(self._runs)

    def shutdown(self) -> None:
        for worker_id in list(self._actors):
            self.kill(worker_id)


class ThreadLauncher:
    """The worker loop in threads of this process; for unit tests of the master."""

    def __init__(self, master_url: str, store_root: str) -> None:
        self.master_url = master_url
        self.store_root = store_root
        self._ids = itertools.count(1)
        self._threads: dict[str, threading.Thread] = {}

    def launch(self, count: int) -> list[str]:
        from worker.loop import run_worker

        started = []
        for _ in range(count):
            worker_id = f"t{next(self._ids)}"
            thread = threading.Thread(
                target=run_worker, args=(self.master_url, self.store_root, worker_id), daemon=True
            )
            thread.start()
            self._threads[worker_id] = thread
            started.append(worker_id)
        return started

    def kill(self, worker_id: str) -> None:
        raise NotImplementedError("threads cannot be killed; use RayLauncher for kill tests")

    def alive(self) -> list[str]:
        return [w for w, t in self._threads.items() if t.is_alive()]

    def shutdown(self) -> None:
        for thread in self._threads.values():
            thread.join(timeout=30)
