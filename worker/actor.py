"""The Ray actors: thin shells over `worker.loop.run_worker` and over a job's function."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any, TypeVar

import ray

from gridless.worker.loop import run_worker, worker_device

__all__ = ["TaskActor", "WorkerActor"]

R = TypeVar("R")


@ray.remote(num_cpus=1, max_restarts=0, max_concurrency=2)  # type: ignore[call-overload]
# (num_cpus and num_gpus per launch: RayLauncher sets the study's `resources`)
class WorkerActor:
    """One worker slot; `run()` returns when the master says stop."""

    def __init__(self, master_url: str, store_root: str, worker_id: str, token: str | None = None):
        self.master_url = master_url
        self.store_root = store_root
        self.worker_id = worker_id
        self.token = token

    def run(self) -> int:
        """Claim and run trials until told to stop; returns the number of trials run."""
        # Ray sets CUDA_VISIBLE_DEVICES to the GPUs it gave this actor.
        device, note = worker_device(ray.get_gpu_ids())
        return run_worker(
            self.master_url,
            self.store_root,
            self.worker_id,
            token=self.token,
            device=device,
            device_note=note,
        )

    def pid(self) -> int:
        """The process id of this worker (fault-injection tests SIGKILL it)."""
        return os.getpid()


@ray.remote(num_cpus=1, max_restarts=0)
class TaskActor:
    """One job off the master (an ensemble build), on a worker slot of the
    study's size; the launcher kills it once the job answered."""

    def __init__(self, store_root: str) -> None:
        self.store_root = store_root

    def where(self) -> tuple[str, int]:
        """(host name, process id): answers once Ray placed the actor, so the job runs."""
        return socket.gethostname(), os.getpid()

    def run(self, task: Callable[..., R], request: Any) -> R:
        """`task(request, store_root=..., device=...)` on the device Ray gave this slot."""
        device, _ = worker_device(ray.get_gpu_ids())
        return task(request, store_root=self.store_root, device=device)
