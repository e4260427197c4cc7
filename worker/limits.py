"""Per-trial limits: `max_trial_seconds` of wall clock and `max_trial_memory_mb`
of resident memory for one trial attempt.

A trial with a limit runs in a child process of its worker (a fresh interpreter,
`python -m gridless.worker.limits`, in a session of its own), and the worker watches it:
past the time budget, or with the child and its own children holding more resident memory
than the limit, the worker ends the child and records the trial `stopped`, the error naming
the limit and the measured value. So a trial stuck inside one long epoch, or in one huge
allocation, cannot stall the study: no Python-level interruption is needed, the worker
itself is untouched and claims the next trial at once.

The time budget counts from the child's start (its interpreter start and imports, 0.4 to
0.8 s, included); the memory guard reads the child's resident set on Linux (`/proc`), about
55 MB before the trial's own code loads anything (docs/search-controls.md). Without limits
a trial runs in the worker's process, as before.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from gridless.common.checkpoints import CheckpointStore, open_store, trial_folder
from gridless.common.messages import Assignment, FinishRequest
from gridless.worker.client import MasterClient, MasterGone, TrialClosed
from gridless.worker.trial_log import TrialLog

__all__ = [
    "EXIT_MASTER_GONE",
    "StopSource",
    "TrialLimits",
    "WorkerContext",
    "process_tree_rss_mb",
    "run_limited",
]

log = logging.getLogger(__name__)

POLL_S = 0.1  # how often the worker looks at its trial's clock and memory
STOP_GRACE_S = 2.0  # a stopped child that has not exited by then is killed
EXIT_MASTER_GONE = 75  # the child lost the master (EX_TEMPFAIL): the worker stops too


class _IsSet(Protocol):
    def is_set(self) -> bool: ...


class StopSource(Protocol):
    """What a running trial polls for the master's request to stop it: the worker's
    heartbeat, or, in a limited trial's child process, the worker's message to it."""

    @property
    def stop_trial(self) -> _IsSet: ...


@dataclass(frozen=True)
class TrialLimits:
    """The limits of one trial attempt (None: no such limit)."""

    seconds: float | None = None
    memory_mb: int | None = None

    @classmethod
    def of(cls, job: Assignment) -> TrialLimits | None:
        """The job's limits, or None when it has none (it runs in the worker's process)."""
        if job.max_trial_seconds is None and job.max_trial_memory_mb is None:
            return None
        return cls(job.max_trial_seconds, job.max_trial_memory_mb)

    def exceeded(self, elapsed_s: float, rss_mb: float | None) -> str | None:
        """Which limit a trial that ran `elapsed_s` holding `rss_mb` MiB is past, said with
        the measured value; None while it is within both."""
        if self.seconds is not None and elapsed_s > self.seconds:
            return (
                f"time limit: the trial ran {elapsed_s:.1f} s, past max_trial_seconds "
                f"{self.seconds:g}"
            )
        if self.memory_mb is not None and rss_mb is not None and rss_mb > self.memory_mb:
            return (
                f"memory limit: the trial's process held {math.ceil(rss_mb)} MiB resident, past "
                f"max_trial_memory_mb {self.memory_mb}"
            )
        return None


@dataclass(frozen=True)
class WorkerContext:
    """What a limited trial's child process needs to act as its worker."""

    master_url: str
    store_root: str
    worker_id: str
    token: str | None
    device: str


def _rss_mb(pid: int) -> float | None:
    try:
        pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / (1 << 20)


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return found


def process_tree_rss_mb(pid: int) -> float | None:
    """Resident memory of process `pid` and its descendants, in MiB (Linux `/proc`);
    None where it cannot be read (another system, or the process is gone)."""
    total = _rss_mb(pid)
    if total is None:
        return None
    todo, seen = _children(pid), {pid}
    while todo:
        child = todo.pop()
        if child in seen:
            continue
        seen.add(child)
        total += _rss_mb(child) or 0.0
        todo += _children(child)
    return total


def _end_child(proc: subprocess.Popen[bytes]) -> None:
    """Kill the child's whole session (its DataLoader workers too) and reap it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    proc.wait()


def _tell(proc: subprocess.Popen[bytes], line: str) -> None:
    assert proc.stdin is not None
    with contextlib.suppress(OSError, ValueError):
        proc.stdin.write(line.encode("utf-8") + b"\n")
        proc.stdin.flush()


def _finish(
    client: MasterClient, ctx: WorkerContext, job: Assignment, state: str, why: str
) -> None:
    request = FinishRequest(worker_id=ctx.worker_id, attempt=job.attempt, state=state, error=why)
    try:
        client.finish(job.trial_id, request)
    except TrialClosed:
        pass  # the child finished it first, or the master closed it


def run_limited(
    limits: TrialLimits,
    ctx: WorkerContext,
    client: MasterClient,
    store: CheckpointStore,
    job: Assignment,
    header: str,
    stop: StopSource | None = None,
) -> str | None:
    """Run one trial in a child process within `limits`; the limit it passed, or None.
    The trial's log (written by the child) ends with the limit's line.

    Raises:
        MasterGone: when the child could not reach the master (the worker stops too).
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gridless.worker.limits"],
        stdin=subprocess.PIPE,
        env=env,
        start_new_session=True,  # one process group: ending it ends its children too
    )
    try:
        config = {"job": job.model_dump(mode="json"), "header": header, "context": ctx.__dict__}
        _tell(proc, json.dumps(config))
        reason = _watch(proc, limits, stop)
        if reason is None:
            _after_exit(proc.returncode, client, ctx, job)
            return None
        log.warning("trial %s: %s", job.trial_number, reason)
        if reason.startswith("memory"):
            _end_child(proc)  # memory first: the machine may be about to run out
            _finish(client, ctx, job, "stopped", reason)
        else:
            _finish(client, ctx, job, "stopped", reason)  # the master sees it stopped now
            _tell(proc, "stop")  # its next report is refused; a child between epochs exits
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=STOP_GRACE_S)
        with TrialLog(store, job.study, trial_folder(job.trial_number), f"{header}: {reason}"):
            pass
        return reason
    finally:
        if proc.poll() is None:
            _end_child(proc)  # stuck inside an epoch, or the worker is going down
        assert proc.stdin is not None
        with contextlib.suppress(OSError):
            proc.stdin.close()


def _watch(
    proc: subprocess.Popen[bytes], limits: TrialLimits, stop: StopSource | None
) -> str | None:
    """Wait for the child to exit, or to pass a limit (returned, said with the value)."""
    started = time.monotonic()
    relayed = False
    while proc.poll() is None:
        if stop is not None and stop.stop_trial.is_set() and not relayed:
            _tell(proc, "stop")  # the master asked: the child stops at its next report
            relayed = True
        rss = process_tree_rss_mb(proc.pid) if limits.memory_mb is not None else None
        reason = limits.exceeded(time.monotonic() - started, rss)
        if reason is not None:
            return reason
        time.sleep(POLL_S)
    return None


def _after_exit(code: int, client: MasterClient, ctx: WorkerContext, job: Assignment) -> None:
    """A child that exited by itself: it finished the trial, unless it was killed."""
    if code == EXIT_MASTER_GONE:
        raise MasterGone(f"trial {job.trial_number}'s process lost the master")
    if code != 0:
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
        why = f"the trial's process ended with {how}"
        if code == -signal.SIGKILL:
            why += " (killed from outside: out of memory?)"
        _finish(client, ctx, job, "failed", why)


# -- the child process -------------------------------------------------------------------


class _Messages:
    """The worker's lines on the child's stdin: "stop" asks the trial to stop."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.stop_trial = threading.Event()
        self._thread = threading.Thread(target=self._read, name="trial-stop", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self.stream:
            if line.strip() == "stop":
                self.stop_trial.set()


def _die_with_parent() -> None:
    """Linux: the child is killed when its worker dies, so no orphan trains on."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _child_main() -> int:
    from gridless.worker.loop import run_assigned  # the loop imports this module

    _die_with_parent()
    config: dict[str, Any] = json.loads(sys.stdin.readline())
    ctx = WorkerContext(**config["context"])
    job = Assignment.model_validate(config["job"])
    messages = _Messages(sys.stdin)
    client = MasterClient(ctx.master_url, token=ctx.token)
    store = open_store(ctx.store_root)
    try:
        with TrialLog(store, job.study, trial_folder(job.trial_number), config["header"]):
            run_assigned(client, store, ctx.worker_id, job, messages, device=ctx.device)
    except MasterGone:
        return EXIT_MASTER_GONE
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(_child_main())
