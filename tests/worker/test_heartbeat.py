"""The heartbeat thread: a stale "stop" must not stop the next trial."""

from __future__ import annotations

import threading

from gridless.common.messages import HeartbeatRequest, ReportAck
from gridless.worker.heartbeat import Heartbeat


class SlowMaster:
    """Answers "stop" for trial 1 only after the worker has moved on to trial 2."""

    def __init__(self) -> None:
        self.in_flight = threading.Event()
        self.release = threading.Event()
        self.requests: list[HeartbeatRequest] = []

    def heartbeat(self, request: HeartbeatRequest) -> ReportAck:
        self.requests.append(request)
        self.in_flight.set()
        self.release.wait(5)
        return ReportAck(stored=False, stop=request.trial_id == 1)

    def close(self) -> None:
        pass


def test_a_stop_for_the_previous_trial_does_not_stop_the_next() -> None:
    master = SlowMaster()
    beat = Heartbeat(master, "w1", interval_s=60)  # type: ignore[arg-type]
    beat.watch(1, 0)
    sender = threading.Thread(target=beat.beat)
    sender.start()
    assert master.in_flight.wait(5)
    beat.watch(2, 0)  # trial 1 ended; the worker runs trial 2 while the beat is in flight
    master.release.set()
    sender.join(5)
    assert not beat.stop_trial.is_set()


def test_a_stop_for_the_current_trial_is_honoured() -> None:
    master = SlowMaster()
    master.release.set()
    beat = Heartbeat(master, "w1", interval_s=60)  # type: ignore[arg-type]
    beat.watch(1, 0)
    beat.beat()
    assert beat.stop_trial.is_set()
    assert [(r.trial_id, r.attempt) for r in master.requests] == [(1, 0)]
