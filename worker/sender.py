"""A trial's epoch reports on their way to the master, batched when epochs are faster than
a round trip.

`send` hands a report to a background thread that posts whatever has accumulated: one
report alone, or every report that piled up while the previous request was in flight
(`POST /trials/{id}/reports/batch`, up to 100). When epochs are slower than a round trip,
`send` waits for its own acknowledgement, so the master's answer (stop: early stopping, a
stopped study) is seen before the next epoch trains, exactly as without batching; when
they are faster, it returns at once with the newest answer so far. `flush` waits until
everything sent is acknowledged; call it before finishing the trial. An error of the
background thread (the trial closed, the master gone) is raised by the next call.
"""

from __future__ import annotations

import threading
import time

from gridless.common.messages import EpochReport, ReportBatch
from gridless.worker.client import MasterClient

__all__ = ["MAX_BATCH", "ReportSender"]

MAX_BATCH = 100


class ReportSender:
    """The reports of one trial attempt, in order, each acknowledged after its commit."""

    def __init__(self, client: MasterClient, trial_id: int) -> None:
        self.client, self.trial_id = client, trial_id
        self._cond = threading.Condition()
        self._queue: list[EpochReport] = []
        self._sent = 0  # reports handed to send()
        self._acked = 0  # reports the master acknowledged
        self._busy = False
        self._stop = False
        self._error: BaseException | None = None
        self._closed = False
        self._round_trip = 0.0  # the latest request's seconds
        self._last_send: float | None = None
        self.requests = 0  # HTTP requests made (tests read it)
        self._thread = threading.Thread(target=self._run, name="report-sender", daemon=True)
        self._thread.start()

    def send(self, report: EpochReport) -> bool:
        """Queue `report`; True when the master said the trial must stop."""
        now = time.perf_counter()
        # slower than a round trip (or the first): wait for this report's answer
        wait = self._last_send is None or now - self._last_send > 2 * self._round_trip
        self._last_send = now
        with self._cond:
            self._raise_error()
            self._queue.append(report)
            self._sent += 1
            mine = self._sent
            self._cond.notify_all()
            if wait:
                while self._acked < mine and self._error is None:
                    self._cond.wait()
                self._raise_error()
            return self._stop

    def flush(self) -> bool:
        """Wait until every queued report is acknowledged; the stop flag."""
        with self._cond:
            while (self._queue or self._busy) and self._error is None:
                self._cond.wait()
            self._raise_error()
            return self._stop

    def close(self) -> None:
        """Stop the background thread (what is queued is not sent: call flush first)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=5)

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                self._busy = True
            start = time.perf_counter()
            try:
                if len(batch) == 1:
                    stop = self.client.report(self.trial_id, batch[0]).stop
                else:
                    stop = self.client.reports(self.trial_id, ReportBatch(reports=batch)).stop
            except BaseException as exc:  # raised to the trial by its next call
                with self._cond:
                    self._error, self._busy = exc, False
                    self._queue = []
                    self._cond.notify_all()
                return
            with self._cond:
                self.requests += 1
                self._round_trip = time.perf_counter() - start
                self._acked += len(batch)
                self._stop = self._stop or stop
                self._busy = False
                self._cond.notify_all()
