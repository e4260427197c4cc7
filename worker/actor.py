"""The Ray actor: a thin shell over `worker.loop.run_worker`."""

from __future__ import annotations

import os

import ray

from gridless.worker.loop import run_worker, worker_device

__all__ = ["WorkerActor"]


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
        # Ray sets CUDA_VISIBLE_DEVICES to the GPUs it gave this actor (issue 16).
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
