"""Launching and killing workers, and running jobs on them, behind one small protocol.

`RayLauncher` starts real Ray actors (local Ray or a cluster address); `ThreadLauncher`
runs the same worker loop, and the same jobs, in threads of this process, for unit
tests only. A job (an ensemble build) is a worker function run once on a slot
of the study's size, with the environment the workers get, so it imports what the
trials imported.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import socket
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Generic, Protocol, TypeVar

from gridless.common.errors import ConflictError

__all__ = ["RayLauncher", "TaskFailed", "TaskHandle", "ThreadLauncher", "WorkerLauncher"]

log = logging.getLogger(__name__)

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


class TaskFailed(RuntimeError):
    """A job's function raised, or the worker running it died; the message says which."""


class TaskHandle(Protocol[R_co]):
    """A job handed to a worker slot."""

    def started(self) -> tuple[str, int]:
        """Wait until a worker runs the job; its (host name, process id)."""
        ...

    def result(self) -> R_co:
        """Wait for the job's answer and free its slot.

        Raises:
            TaskFailed: when the function raised or its worker died.
        """
        ...


class WorkerLauncher(Protocol):
    """Starts and stops workers that talk to the master at `master_url`."""

    def launch(self, count: int, *, cpu: float = 1.0, gpu: float = 0.0) -> list[str]:
        """Start `count` workers, each holding `cpu` CPUs and `gpu` GPUs; their ids."""
        ...

    def kill(self, worker_id: str) -> None:
        """Stop one worker at once (its trial is lost and resumed elsewhere)."""
        ...

    def ended(self) -> list[tuple[str, str | None]]:
        """Workers that ended since the last call: (id, error or None for a clean exit)."""
        ...

    def alive(self) -> list[str]:
        """Ids of the workers still running."""
        ...

    def shutdown(self) -> None:
        """Stop every worker, and every job still running."""
        ...

    def start_task(
        self, task: Callable[..., R], request: Any, *, cpu: float = 1.0, gpu: float = 0.0
    ) -> TaskHandle[R]:
        """Run `task(request, store_root=..., device=...)` once on a worker slot holding
        `cpu` CPUs and `gpu` GPUs (queued until the cluster has one free)."""
        ...


FORWARDED_ENV = frozenset(
    {
        "GRIDLESS_STORE_OPTIONS",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL",
        "AWS_PROFILE",
    }
)


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
        self._tasks: dict[int, Any] = {}  # id -> the TaskActor of a job not yet answered
        self._task_ids = itertools.count(1)
        self._lock = threading.Lock()

    def capacity(self, *, cpu: float, gpu: float) -> int:
        """How many more workers of this size the cluster's free resources hold.

        Raises:
            ConflictError: when no node of the cluster could ever run one: it names the
                request and every node's resources.
        """
        import ray

        nodes = [n for n in ray.nodes() if n.get("Alive")]  # type: ignore[no-untyped-call]
        have = [(n.get("Resources") or {}) for n in nodes]
        if not any(r.get("CPU", 0) >= cpu and r.get("GPU", 0) >= gpu for r in have):
            shown = "; ".join(
                f"{n.get('NodeManagerAddress', '?')}: "
                f"CPU {r.get('CPU', 0):g}, GPU {r.get('GPU', 0):g}"
                for n, r in zip(nodes, have, strict=True)
            )
            raise ConflictError(
                f"each trial asks for cpu={cpu:g}, gpu={gpu:g}, and no node of the Ray cluster "
                f"has that: {shown or 'no node'}"
            )
        free: dict[str, float] = ray.available_resources()  # type: ignore[no-untyped-call]
        fits = math.floor(float(free.get("CPU", 0)) / cpu + 1e-9)
        if gpu > 0:
            fits = min(fits, math.floor(float(free.get("GPU", 0)) / gpu + 1e-9))
        return max(int(fits), 0)

    def launch(self, count: int, *, cpu: float = 1.0, gpu: float = 0.0) -> list[str]:
        from gridless.worker.actor import WorkerActor

        self.capacity(cpu=cpu, gpu=gpu)  # fail fast: a request no node can satisfy
        env = self._worker_env(cpu)
        started = []
        with self._lock:
            for _ in range(count):
                worker_id = f"{self.prefix}{next(self._ids)}"
                actor = WorkerActor.options(  # type: ignore[attr-defined]
                    num_cpus=cpu, num_gpus=gpu, runtime_env={"env_vars": env}
                ).remote(self.master_url, self.store_root, worker_id, self.token)
                self._actors[worker_id] = actor
                self._runs[worker_id] = actor.run.remote()
                started.append(worker_id)
        return started

    def _worker_env(self, cpu: float) -> dict[str, str]:
        """The environment of a worker or a job on a slot of `cpu` CPUs."""
        threads = str(max(1, math.floor(cpu)))  # NumPy's and Torch's threads follow `cpu`
        env = {"OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads}
        # The store's options and credentials travel with the workers, so one master
        # setting serves every node of a cluster.
        env.update({k: v for k, v in os.environ.items() if k in FORWARDED_ENV})
        paths = [*self.python_path, *filter(None, [os.environ.get("PYTHONPATH")])]
        if paths:
            env["PYTHONPATH"] = os.pathsep.join(paths)
        return env

    def start_task(
        self, task: Callable[..., R], request: Any, *, cpu: float = 1.0, gpu: float = 0.0
    ) -> RayTask[R]:
        from gridless.worker.actor import TaskActor

        self.capacity(cpu=cpu, gpu=gpu)  # fail fast: a job no node could ever run
        actor = TaskActor.options(  # type: ignore[attr-defined]
            num_cpus=cpu, num_gpus=gpu, runtime_env={"env_vars": self._worker_env(cpu)}
        ).remote(self.store_root)
        with self._lock:
            task_id = next(self._task_ids)
            self._tasks[task_id] = actor
        return RayTask(actor, task, request, release=lambda: self._release(task_id))

    def _release(self, task_id: int) -> None:
        import ray

        with self._lock:
            actor = self._tasks.pop(task_id, None)
        if actor is not None:
            ray.kill(actor, no_restart=True)

    def pid(self, worker_id: str) -> int:
        """The operating-system process id of a worker (for fault-injection tests)."""
        import ray

        return int(ray.get(self._actors[worker_id].pid.remote(), timeout=60))

    def kill(self, worker_id: str) -> None:
        import ray

        with self._lock:
            actor = self._actors.pop(worker_id, None)
            self._runs.pop(worker_id, None)
        if actor is None:
            raise KeyError(worker_id)
        ray.kill(actor, no_restart=True)

    def ended(self) -> list[tuple[str, str | None]]:
        import ray

        with self._lock:
            if not self._runs:
                return []
            refs = list(self._runs.values())
            done, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
            finished = set(done)
            ended: list[tuple[str, str | None]] = []
            for worker_id, ref in list(self._runs.items()):
                if ref not in finished:
                    continue
                try:
                    ray.get(ref)
                    ended.append((worker_id, None))
                except Exception as exc:  # the actor died or its loop raised
                    ended.append((worker_id, exc.__class__.__name__))
                del self._runs[worker_id]
                self._actors.pop(worker_id, None)
            return ended

    def alive(self) -> list[str]:
        with self._lock:
            return list(self._runs)

    def shutdown(self) -> None:
        for worker_id in self.alive():
            try:
                self.kill(worker_id)
            except KeyError:
                pass
        with self._lock:
            tasks = list(self._tasks)
        for task_id in tasks:  # a job still running ends with its master
            self._release(task_id)


class RayTask(Generic[R]):
    """A job on a `TaskActor`: asked for where it runs, then for its answer."""

    def __init__(
        self, actor: Any, task: Callable[..., R], request: Any, *, release: Callable[[], None]
    ) -> None:
        self._where = actor.where.remote()
        self._answer = actor.run.remote(task, request)
        self._release = release

    def started(self) -> tuple[str, int]:
        import ray

        try:
            host, pid = ray.get(self._where)
        except ray.exceptions.RayError as exc:
            self._release()
            raise TaskFailed(_ray_failure(exc)) from None
        return str(host), int(pid)

    def result(self) -> R:
        import ray

        try:
            answer: R = ray.get(self._answer)
        except ray.exceptions.RayError as exc:
            raise TaskFailed(_ray_failure(exc)) from None
        finally:
            self._release()
        return answer


def _ray_failure(exc: Exception) -> str:
    """What a job's failure was: the function's own exception, or the worker's death."""
    import ray

    if isinstance(exc, ray.exceptions.RayTaskError):
        cause = exc.cause
        return f"{cause.__class__.__name__}: {cause}"
    if isinstance(exc, ray.exceptions.RayActorError):
        return "the worker running the job died (or was stopped with its master)"
    return f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


class ThreadLauncher:
    """The worker loop in threads of this process; for unit tests of the master."""

    def __init__(self, master_url: str, store_root: str, *, token: str | None = None) -> None:
        self.master_url = master_url
        self.store_root = store_root
        self.token = token
        self._ids = itertools.count(1)
        self._threads: dict[str, threading.Thread] = {}
        self._reported: set[str] = set()

    def launch(self, count: int, *, cpu: float = 1.0, gpu: float = 0.0) -> list[str]:
        from gridless.worker.loop import run_worker

        started = []
        for _ in range(count):
            worker_id = f"t{next(self._ids)}"
            thread = threading.Thread(
                target=run_worker,
                args=(self.master_url, self.store_root, worker_id),
                kwargs={"token": self.token},
                daemon=True,
            )
            thread.start()
            self._threads[worker_id] = thread
            started.append(worker_id)
        return started

    def kill(self, worker_id: str) -> None:
        raise NotImplementedError("threads cannot be killed; use RayLauncher to kill workers")

    def ended(self) -> list[tuple[str, str | None]]:
        done = [
            w for w, t in self._threads.items() if not t.is_alive() and w not in self._reported
        ]
        self._reported.update(done)
        return [(w, None) for w in done]

    def alive(self) -> list[str]:
        return [w for w, t in self._threads.items() if t.is_alive()]

    def shutdown(self) -> None:
        for thread in self._threads.values():
            thread.join(timeout=30)

    def start_task(
        self, task: Callable[..., R], request: Any, *, cpu: float = 1.0, gpu: float = 0.0
    ) -> ThreadTask[R]:
        return ThreadTask(task, request, store_root=self.store_root)


class ThreadTask(Generic[R]):
    """A job in a thread of this process (the unit tests' fake of `RayTask`)."""

    def __init__(self, task: Callable[..., R], request: Any, *, store_root: str) -> None:
        self._running = threading.Event()
        self._answer: Future[R] = Future()

        def body() -> None:
            self._running.set()
            try:
                self._answer.set_result(task(request, store_root=store_root, device="cpu"))
            except Exception as exc:  # the job's failure is its answer
                self._answer.set_exception(exc)

        threading.Thread(target=body, name="gridless-task", daemon=True).start()

    def started(self) -> tuple[str, int]:
        self._running.wait()
        return socket.gethostname(), os.getpid()

    def result(self) -> R:
        try:
            return self._answer.result()
        except Exception as exc:
            raise TaskFailed(f"{exc.__class__.__name__}: {exc}") from None
