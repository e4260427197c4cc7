"""A flood of requests gets 503 with Retry-After beyond the master's in-flight limit,
while heartbeats and health checks are never shed (a flood must not make the master
declare live workers lost); afterwards the master serves as before."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import httpx

from gridless.master.app import create_app
from gridless.master.server import BackgroundServer
from gridless.worker.client import MasterClient
from tests.conftest import tiny_spec


def test_a_flood_is_shed_while_heartbeats_pass(tmp_path: Path) -> None:
    app = create_app(
        database_url=f"sqlite:///{tmp_path / 'g.db'}",
        store_root=tmp_path / "store",
        max_inflight=4,
    )
    with BackgroundServer(app) as server:
        app.state.service.create_study(tiny_spec())
        base = server.url + "/api/v1"
        trial = httpx.post(base + "/workers/claim", json={"worker_id": "w1"}).json()
        trial_id = trial["assignment"]["trial_id"]
        statuses: Counter[int] = Counter()
        retry_after: set[str | None] = set()
        beats: list[tuple[int, float]] = []
        lock = threading.Lock()
        stop = threading.Event()

        def flood() -> None:
            with httpx.Client(base_url=base, timeout=30) as client:
                while not stop.is_set():
                    r = client.get("/studies/1/trials", params={"limit": 1000})
                    with lock:
                        statuses[r.status_code] += 1
                        if r.status_code == 503:
                            retry_after.add(r.headers.get("retry-after"))

        def heartbeat() -> None:
            with httpx.Client(base_url=base, timeout=30) as client:
                while not stop.is_set():
                    t0 = time.perf_counter()
                    r = client.post(
                        "/workers/heartbeat",
                        json={"worker_id": "w1", "trial_id": trial_id, "attempt": 0},
                    )
                    beats.append((r.status_code, time.perf_counter() - t0))
                    time.sleep(0.05)

        threads = [threading.Thread(target=flood) for _ in range(24)]
        threads.append(threading.Thread(target=heartbeat))
        for t in threads:
            t.start()
        time.sleep(4)
        stop.set()
        for t in threads:
            t.join(timeout=60)
        # Once the flood is over the master serves the worker protocol as before.
        client = MasterClient(server.url, retry_for_s=30)
        answer = client.claim("w2")
        client.close()
        health = httpx.get(base + "/health")
    assert statuses[503] > 0, statuses
    assert set(statuses) <= {200, 503}, statuses  # shed or served, never a failure
    assert statuses[200] > 0
    assert retry_after == {"1"}
    assert beats
    assert {code for code, _ in beats} == {200}, "a heartbeat was shed or failed"
    slowest = sorted(s for _, s in beats)[int(0.99 * (len(beats) - 1))]
    print(
        f"flood: {dict(statuses)}; {len(beats)} heartbeats, all 200, p99 {slowest * 1000:.0f} ms"
    )
    assert answer.action == "train"
    assert health.status_code == 200
