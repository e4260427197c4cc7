"""The master's single writer: every state-changing call of the worker protocol runs here,
many to a transaction (group commit).

Request threads (and async handlers) submit a job, a function of one SQLAlchemy session;
one thread takes whatever jobs are waiting (up to `max_batch`), runs each inside its own
SAVEPOINT, so that a job that raises (a 404, a 409) undoes only its own changes, and
commits them all at once. Each job's answer is released only after that commit: "a 2xx
means committed" stays true, and a failed commit fails every job of the batch (the
workers resend). Work a job must do only once its changes are durable (deleting the
files retention let go) is registered with `Batch.after_commit` and runs after the
commit, outside the transaction and the write lock.

The writer holds `MasterContext.write_lock` for each batch, so the services' own writes
(creating a study, pausing it) never interleave with a batch.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from gridless.common.errors import StorageError
from gridless.master.context import MasterContext

__all__ = ["Batch", "GroupWriter"]

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class Batch:
    """What a job may ask of the transaction it runs in."""

    session: Session
    _after: list[Callable[[], None]] = field(default_factory=list)

    def after_commit(self, action: Callable[[], None]) -> None:
        """Run `action` once the batch's transaction has committed (not if it fails)."""
        self._after.append(action)


Job = Callable[[Batch], Any]


class GroupWriter:
    """One writer thread, group commit, an answer per job after its commit.

    Args:
        context: the sessions and the write lock.
        max_batch: at most this many jobs in one transaction.
    """

    def __init__(self, context: MasterContext, *, max_batch: int = 256) -> None:
        self.context = context
        self.max_batch = max_batch
        self._jobs: queue.SimpleQueue[tuple[Job, Future[Any]] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.batches = 0  # transactions committed (for tests and benchmarks)
        self.jobs_done = 0

    # -- submitting ------------------------------------------------------------------------

    def submit(self, job: Callable[[Batch], T]) -> Future[T]:
        """Queue `job`; its future resolves after the commit of its batch."""
        self._ensure_started()
        future: Future[T] = Future()
        self._jobs.put((job, future))
        return future

    def run(self, job: Callable[[Batch], T]) -> T:
        """Run `job` in the next batch and return its result once committed."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("a writer job cannot wait for another job")
        return self.submit(job).result()

    async def run_async(self, job: Callable[[Batch], T]) -> T:
        """`run` for async handlers: the event loop is free while the batch commits."""
        return await asyncio.wrap_future(self.submit(job))

    def _ensure_started(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name="gridless-writer", daemon=True
                )
                self._thread.start()

    def close(self) -> None:
        """Finish the queued jobs, then stop the thread."""
        if self._thread is not None and self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join(timeout=30)

    # -- the writer thread -----------------------------------------------------------------

    def _take(self) -> tuple[list[tuple[Job, Future[Any]]], bool]:
        first = self._jobs.get()
        if first is None:
            return [], True
        taken = [first]
        while len(taken) < self.max_batch:
            try:
                item = self._jobs.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return taken, True
            taken.append(item)
        return taken, False

    def _loop(self) -> None:
        while True:
            taken, stop = self._take()
            if taken:
                self._commit(taken)
            if stop:
                return

    def _commit(self, taken: list[tuple[Job, Future[Any]]]) -> None:
        results: list[tuple[Future[Any], bool, Any]] = []
        after: list[Callable[[], None]] = []
        try:
            with self.context.write_lock:
                session = self.context.sessions()
                try:
                    for job, future in taken:
                        if not future.set_running_or_notify_cancel():
                            continue
                        batch = Batch(session)
                        session.info["batch"] = batch  # for hooks that see only the session
                        savepoint = session.begin_nested()
                        try:
                            value = job(batch)
                            savepoint.commit()
                        except IntegrityError as exc:  # this job's rows clash: this job
                            savepoint.rollback()
                            error = StorageError(f"database error: {exc.__class__.__name__}")
                            results.append((future, False, error))
                            continue
                        except SQLAlchemyError:
                            raise  # the database itself failed: the whole batch does
                        except BaseException as exc:  # a domain error: this job only
                            savepoint.rollback()
                            results.append((future, False, exc))
                            continue
                        results.append((future, True, value))
                        after.extend(batch._after)
                    session.commit()
                except BaseException:
                    session.rollback()
                    raise
                finally:
                    session.close()
        except SQLAlchemyError as exc:
            error = StorageError(f"database error: {exc.__class__.__name__}")
            log.warning("a batch of %d writes failed: %s", len(taken), exc)
            for _job, future in taken:
                if future.running():
                    future.set_exception(error)
            return
        except BaseException as exc:  # never leave a request waiting
            log.exception("the writer failed a batch of %d", len(taken))
            for _job, future in taken:
                if future.running():
                    future.set_exception(exc)
            return
        self.batches += 1
        self.jobs_done += len(results)
        for future, ok, value in results:
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
        for action in after:
            try:
                action()
            except Exception:  # a file that cannot be deleted is logged, not fatal
                log.exception("an after-commit action failed")
