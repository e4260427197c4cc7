"""A network cut between workers and the master, through a loopback proxy the test
controls: requests fail outright for a while, then the master processes requests whose
answers never arrive. Workers retry; reports are idempotent; nothing is lost or doubled."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import func, select

from gridless.common.db import EpochMetricRow, TrialRow, session_scope
from tests.conftest import Master, tiny_spec
from tests.proxy import RecordingProxy

pytestmark = [pytest.mark.slow]

SLOW = {"batch_size": 8, "hidden": 256, "layers": 2}


def test_workers_ride_out_a_network_cut_and_lost_answers(master: Master) -> None:
    from gridless.worker.loop import run_worker

    spec = tiny_spec(fixed=SLOW, stages=[{"trials": 4, "epochs": 3}, {"trials": 2, "epochs": 3}])
    study = master.service.create_study(spec)
    with RecordingProxy(master.url) as proxy:
        workers = [
            threading.Thread(
                target=run_worker, args=(proxy.url, master.store_root, f"t{i}"), daemon=True
            )
            for i in (1, 2)
        ]
        for thread in workers:
            thread.start()
        deadline = time.monotonic() + 120
        while len(proxy.acked()) < 2:
            assert time.monotonic() < deadline, "no reports before the cut"
            time.sleep(0.05)
        proxy.cut()  # connections dropped: the workers' requests fail and are retried
        time.sleep(3)
        # a loaded machine may send nothing in 3 s: the cut lasts until it has dropped one
        while proxy.dropped == 0:
            assert time.monotonic() < deadline + 120, "the cut dropped no request"
            time.sleep(0.05)
        cut_dropped = proxy.dropped
        proxy.drop_answers()  # the master processes each request, the answer is lost
        time.sleep(3)
        while proxy.dropped == cut_dropped:
            assert time.monotonic() < deadline + 240, "no answer was lost"
            time.sleep(0.05)
        lost_answers = proxy.dropped - cut_dropped
        proxy.restore()
        for thread in workers:
            thread.join(timeout=240)
            assert not thread.is_alive(), "a worker did not finish"
        acks = proxy.acked()

    print(
        f"network cut: {cut_dropped} requests cut, {lost_answers} answers lost, {len(acks)} acks"
    )
    assert cut_dropped > 0, "the cut dropped no request"
    assert lost_answers > 0, "no answer was lost"
    assert master.service.progress(study.id).state == "completed"
    with session_scope(master.service.sessions) as s:
        trials = list(s.scalars(select(TrialRow)))
        stored = {(m.trial_id, m.epoch): m.val_accuracy for m in s.scalars(select(EpochMetricRow))}
        rows = s.scalar(select(func.count()).select_from(EpochMetricRow))
    assert {t.state for t in trials} == {"completed"}
    # Exactly one stored report per trial and epoch: 4 x 3 + 2 x 3, none doubled by resends.
    assert rows == len(stored) == 18
    for a in acks:
        assert stored[(a.trial_id, a.epoch)] == a.val_accuracy
