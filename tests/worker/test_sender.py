"""The worker's report sender: fast epochs travel in batches, slow ones one by
one with their answer awaited, every epoch stored exactly once, errors raised to the
trial. Against a real master."""

from __future__ import annotations

import time

import httpx
import pytest

from gridless.common.messages import EpochReport
from gridless.worker.client import MasterClient, TrialClosed
from gridless.worker.sender import ReportSender
from tests.conftest import Master, tiny_spec


def started_trial(master: Master, epochs: int = 200) -> int:
    master.service.create_study(
        tiny_spec(early_stopping={"rule": "none"}, stages=[{"trials": 2, "epochs": epochs}])
    )
    with httpx.Client(base_url=master.url + "/api/v1", timeout=30) as api:
        job = api.post("/workers/claim", json={"worker_id": "w1"}).json()["assignment"]
        api.post(
            f"/trials/{job['trial_id']}/start",
            json={"worker_id": "w1", "attempt": 0, "params": {"learning_rate": 0.1}},
        ).raise_for_status()
    return int(job["trial_id"])


def epoch(n: int, **extra: object) -> EpochReport:
    return EpochReport(worker_id="w1", attempt=0, epoch=n, val_accuracy=0.5, **extra)  # type: ignore[arg-type]


def stored_epochs(master: Master, trial_id: int) -> list[int]:
    metrics = httpx.get(f"{master.url}/api/v1/trials/{trial_id}/metrics?limit=10000").json()
    return [m["epoch"] for m in metrics]


def test_fast_epochs_travel_in_batches_and_each_is_stored_once(master: Master) -> None:
    tid = started_trial(master)
    client = MasterClient(master.url)
    sender = ReportSender(client, tid)
    for n in range(1, 201):
        assert sender.send(epoch(n)) is False  # epochs far faster than a round trip
    assert sender.flush() is False
    sender.close()
    client.close()
    assert stored_epochs(master, tid) == list(range(1, 201))
    assert sender.requests < 100  # most requests carried several epochs


def test_slow_epochs_wait_for_their_answer(master: Master) -> None:
    tid = started_trial(master, epochs=5)
    client = MasterClient(master.url)
    sender = ReportSender(client, tid)
    assert sender.send(epoch(1)) is False
    # an epoch slower than a round trip, as measured (a loaded machine's is slow too)
    time.sleep(max(0.5, 3 * sender._round_trip))
    httpx.post(f"{master.url}/api/v1/studies/1/stop").raise_for_status()
    # the stop is in this very report's answer, before the next epoch trains
    assert sender.send(epoch(2)) is True
    assert sender.requests == 2
    sender.close()
    client.close()


def test_an_error_of_the_background_send_reaches_the_trial(master: Master) -> None:
    tid = started_trial(master, epochs=5)
    client = MasterClient(master.url)
    sender = ReportSender(client, tid)
    try:
        assert sender.send(epoch(1, diverged=True)) is True  # the master ends the trial
        sender.send(epoch(2))  # right after: queued, answered 409 in the background
        with pytest.raises(TrialClosed, match=f"trial {tid} is diverged"):
            sender.flush()
        with pytest.raises(TrialClosed):
            sender.send(epoch(3))
    finally:
        sender.close()
        client.close()
    assert stored_epochs(master, tid) == [1]
