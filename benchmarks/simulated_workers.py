"""Simulated workers: hundreds of them in one asyncio loop (or a few client
processes), each with its own keep-alive connection (aiohttp by default; httpx as an
option, which manages a fifth of the requests per second here), doing what a gridless
worker does over HTTP: claim a trial, register its parameters, report every epoch, finish.

Every worker first claims and starts its trial; once all have (a barrier across the
client processes), they report together, and that phase alone is timed. A report's
latency is the time from its first send to its acknowledgement, retries included: what a
worker waits. Like the real client (worker/client.py) a worker resends after a 5xx, 429
or a dropped connection, backing off from 0.1 s to 2 s.

What travels on the wire is built in one place, `Wire`: one `EpochReport` per
`POST /api/v1/trials/{id}/reports`, or with `batch` > 1 several epochs in one
`POST .../reports/batch` (common/messages.py), as the real worker's sender batches.

`client_ceiling` runs the same workers against a null HTTP server (canned answers, no
framework, no database), so a table can say whether the master or the client was the
limit.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from tests.net import free_port

__all__ = [
    "CLIENTS",
    "AiohttpTransport",
    "HttpxTransport",
    "NoAnswer",
    "Request",
    "Tally",
    "Transport",
    "Wire",
    "client_ceiling",
    "closed_loop",
    "drive",
    "open_transport",
    "percentile",
]

TRANSPORT_ERROR = 0  # the "status" of a request that got no answer
_RETRY = frozenset({429, 502, 503, 504})
CLIENTS = ("aiohttp", "httpx")


class NoAnswer(Exception):
    """A request got no HTTP answer (refused, reset, timed out)."""


class Transport(Protocol):
    """How the simulated workers reach a server; worker i always uses its own connection."""

    async def request(
        self, worker: int, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[int, Any]:
        """(status, decoded JSON or None). Raises NoAnswer."""
        ...

    async def close(self) -> None: ...


class AiohttpTransport:
    """One aiohttp session whose pool holds a keep-alive connection per worker (the
    default: about five times the requests per second of httpx's async client here)."""

    def __init__(self, base_url: str, workers: int) -> None:
        import aiohttp

        self._errors = (aiohttp.ClientError, TimeoutError, OSError)
        self._session = aiohttp.ClientSession(
            base_url.rstrip("/") + "/",
            connector=aiohttp.TCPConnector(limit=workers, force_close=False),
            timeout=aiohttp.ClientTimeout(total=120, connect=30),
        )

    async def request(
        self, worker: int, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[int, Any]:
        try:
            async with self._session.request(method, path.lstrip("/"), json=body) as answer:
                data = await answer.read()
                return answer.status, json.loads(data) if data else None
        except self._errors as exc:
            raise NoAnswer(type(exc).__name__) from exc

    async def close(self) -> None:
        await self._session.close()


class HttpxTransport:
    """An httpx.AsyncClient per worker (one shared pool of hundreds of connections costs
    O(connections) a request: 250 requests/s at 256 connections here)."""

    def __init__(self, base_url: str, workers: int) -> None:
        timeout = httpx.Timeout(120.0, connect=30.0)
        self._clients = [
            httpx.AsyncClient(
                base_url=base_url, timeout=timeout, limits=httpx.Limits(max_connections=1)
            )
            for _ in range(workers)
        ]

    async def request(
        self, worker: int, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[int, Any]:
        try:
            answer = await self._clients[worker].request(method, path, json=body)
        except httpx.TransportError as exc:
            raise NoAnswer(type(exc).__name__) from exc
        return answer.status_code, answer.json() if answer.content else None

    async def close(self) -> None:
        for client in self._clients:
            await client.aclose()


def open_transport(client: str, base_url: str, workers: int) -> Transport:
    """The transport named `client` ("aiohttp" or "httpx") to `base_url`."""
    if client == "aiohttp":
        return AiohttpTransport(base_url, workers)
    if client == "httpx":
        return HttpxTransport(base_url, workers)
    raise ValueError(f"client must be one of {CLIENTS}, but got {client!r}")


@dataclass(frozen=True)
class Request:
    """One POST: where, the JSON body, and the epochs whose reports it carries."""

    path: str
    body: dict[str, Any]
    epochs: tuple[int, ...] = ()


class Wire:
    """Every request body a simulated worker sends (common/messages.py), in one place."""

    @staticmethod
    def claim(worker_id: str) -> Request:
        return Request("/workers/claim", {"worker_id": worker_id})

    @staticmethod
    def start(trial_id: int, worker_id: str) -> Request:
        body = {"worker_id": worker_id, "attempt": 0, "params": {"learning_rate": 0.1}}
        return Request(f"/trials/{trial_id}/start", body)

    @staticmethod
    def heartbeat(trial_id: int, worker_id: str) -> Request:
        body = {"worker_id": worker_id, "trial_id": trial_id, "attempt": 0}
        return Request("/workers/heartbeat", body)

    @staticmethod
    def report(worker_id: str, epoch: int, epochs: int) -> dict[str, Any]:
        """One EpochReport as a NumPy worker sends it (no stats, no checkpoint)."""
        return {
            "worker_id": worker_id,
            "attempt": 0,
            "epoch": epoch,
            "train_loss": 1.0 / epoch,
            "train_accuracy": min(1.0, epoch / epochs),
            "val_loss": 1.0 / epoch,
            "val_accuracy": min(1.0, epoch / epochs),
            "seconds": 0.0,
        }

    @classmethod
    def report_requests(
        cls, trial_id: int, worker_id: str, epochs: Sequence[int], total: int
    ) -> list[Request]:
        """The requests that carry these epochs' reports: one epoch alone, several in one
        `POST .../reports/batch` (as worker/sender.py sends what piled up)."""
        if len(epochs) == 1:
            (e,) = epochs
            return [Request(f"/trials/{trial_id}/reports", cls.report(worker_id, e, total), (e,))]
        body = {"reports": [cls.report(worker_id, e, total) for e in epochs]}
        return [Request(f"/trials/{trial_id}/reports/batch", body, tuple(epochs))]

    @staticmethod
    def acknowledged(request: Request, answer: dict[str, Any]) -> tuple[int, ...]:
        """The epochs a 200 answer acknowledges (a ReportAck: stored, or stored before)."""
        return request.epochs

    @staticmethod
    def finish(trial_id: int, worker_id: str) -> Request:
        body = {"worker_id": worker_id, "attempt": 0, "state": "completed"}
        return Request(f"/trials/{trial_id}/finish", body)


@dataclass
class Tally:
    """What the simulated workers of one client process saw; `merge` adds another's."""

    reports: int = 0  # distinct reports acknowledged
    requests: int = 0  # every attempt of every request, claims and finishes included
    statuses: Counter[int] = field(default_factory=Counter)  # 0: no answer
    problems: Counter[str] = field(default_factory=Counter)  # "503 the master is busy"
    latencies: list[float] = field(default_factory=list)  # s, one per report request
    stopped: int = 0  # trials the master told to stop
    started_at: float = 0.0  # time.time() when reporting began
    ended_at: float = 0.0  # ... and when the last report was acknowledged

    def merge(self, other: Tally) -> Tally:
        self.reports += other.reports
        self.requests += other.requests
        self.statuses.update(other.statuses)
        self.problems.update(other.problems)
        self.latencies.extend(other.latencies)
        self.stopped += other.stopped
        self.started_at = min(self.started_at or other.started_at, other.started_at)
        self.ended_at = max(self.ended_at, other.ended_at)
        return self

    @property
    def seconds(self) -> float:
        return max(self.ended_at - self.started_at, 1e-9)

    @property
    def server_errors(self) -> int:
        return sum(n for code, n in self.statuses.items() if code >= 500)

    def summary(self) -> dict[str, Any]:
        """Plain numbers for a table or JSON."""
        return {
            "reports": self.reports,
            "requests": self.requests,
            "seconds": self.seconds,
            "reports_per_s": self.reports / self.seconds,
            "p50_ms": 1000 * percentile(self.latencies, 0.50),
            "p99_ms": 1000 * percentile(self.latencies, 0.99),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "server_errors": self.server_errors,
            "problems": dict(self.problems.most_common(5)),
            "stopped": self.stopped,
        }


def percentile(values: Sequence[float], q: float) -> float:
    """The `q` quantile (nearest rank below); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))]


async def _send(transport: Transport, worker: int, request: Request, tally: Tally) -> Any:
    """POST until a 2xx (backing off like worker/client.py); its JSON. Other 4xx raise."""
    delay = 0.1
    while True:
        tally.requests += 1
        try:
            status, answer = await transport.request(worker, "POST", request.path, request.body)
        except NoAnswer as exc:
            tally.statuses[TRANSPORT_ERROR] += 1
            tally.problems[str(exc)] += 1
        else:
            tally.statuses[status] += 1
            if status < 300:
                return answer
            detail = answer.get("detail", "") if isinstance(answer, dict) else ""
            tally.problems[f"{status} {str(detail)[:60]}"] += 1
            if status not in _RETRY and status < 500:
                raise RuntimeError(f"{request.path}: {status} {detail}")
        await asyncio.sleep(delay)
        delay = min(2 * delay, 2.0)


@dataclass
class _Phase:
    """Shared by the workers of one process: who has started, when reporting may begin."""

    workers: int
    started: int = 0
    reported: int = 0
    all_started: asyncio.Event = field(default_factory=asyncio.Event)
    go: asyncio.Event = field(default_factory=asyncio.Event)
    all_reported: asyncio.Event = field(default_factory=asyncio.Event)

    def count(self, what: str) -> None:
        if what == "started":
            self.started += 1
            if self.started == self.workers:
                self.all_started.set()
        else:
            self.reported += 1
            if self.reported == self.workers:
                self.all_reported.set()


@dataclass(frozen=True)
class _Plan:
    """What every simulated worker does: `epochs` reports, `batch` at a time."""

    epochs: int
    batch: int = 1
    resend: float = 0.0  # the share of report requests sent twice (a lost acknowledgement)
    think_s: float = 0.0  # "training" before each batch of reports; 0: as fast as acked


async def _worker(
    transport: Transport, index: int, name: str, plan: _Plan, phase: _Phase, tally: Tally
) -> None:
    """One simulated worker: claim, start, wait for the others, report, finish."""
    rng = random.Random(name)
    while True:
        answer = await _send(transport, index, Wire.claim(name), tally)
        if answer["action"] == "train":
            break
        await asyncio.sleep(max(float(answer.get("retry_after_s", 0.0)), 0.05))
    trial_id = int(answer["assignment"]["trial_id"])
    beat = float(answer.get("heartbeat_interval_s", 5.0))
    await _send(transport, index, Wire.start(trial_id, name), tally)
    phase.count("started")
    while not phase.go.is_set():  # the last start may come much later: stay alive
        try:
            await asyncio.wait_for(phase.go.wait(), timeout=beat)
        except TimeoutError:
            await _send(transport, index, Wire.heartbeat(trial_id, name), tally)
    acknowledged: set[int] = set()
    stop = False
    for first in range(1, plan.epochs + 1, plan.batch):
        chunk = range(first, min(first + plan.batch, plan.epochs + 1))
        if plan.think_s > 0:
            await asyncio.sleep(plan.think_s)
        for request in Wire.report_requests(trial_id, name, chunk, plan.epochs):
            sent = time.perf_counter()
            ack = await _send(transport, index, request, tally)
            tally.latencies.append(time.perf_counter() - sent)
            acknowledged.update(Wire.acknowledged(request, ack))
            if rng.random() < plan.resend:
                await _send(transport, index, request, tally)
            if ack.get("stop"):
                tally.stopped += 1
                stop = True
                break
        if stop:
            break
    tally.reports += len(acknowledged)
    tally.ended_at = max(tally.ended_at, time.time())
    phase.count("reported")
    await phase.all_reported.wait()  # finishes stay out of the timed phase
    await _send(transport, index, Wire.finish(trial_id, name), tally)


async def _run_workers(
    client: str,
    url: str,
    names: Sequence[str],
    plan: _Plan,
    ready: Callable[[], object],
) -> Tally:
    """The workers `names` in this event loop; `ready` (blocking) runs once all started."""
    tally = Tally()
    phase = _Phase(workers=len(names))
    transport = open_transport(client, url + "/api/v1", len(names))
    try:
        tasks = [
            asyncio.create_task(_worker(transport, i, n, plan, phase, tally))
            for i, n in enumerate(names)
        ]
        waiting = asyncio.create_task(phase.all_started.wait())
        await asyncio.wait([waiting, *tasks], return_when=asyncio.FIRST_COMPLETED)
        if not phase.all_started.is_set():  # a worker failed before reporting: raise it
            waiting.cancel()
            await asyncio.gather(*tasks)
        await asyncio.get_running_loop().run_in_executor(None, ready)
        tally.started_at = time.time()
        phase.go.set()
        await asyncio.gather(*tasks)
    finally:
        await transport.close()
    return tally


def _client_process(
    client: str, url: str, names: list[str], plan: _Plan, barrier: Any, results: Any
) -> None:
    """A spawned client process: its share of the workers; its Tally onto `results`."""
    try:
        tally: Tally | str = asyncio.run(_run_workers(client, url, names, plan, barrier.wait))
    except BaseException as exc:
        barrier.abort()
        tally = f"{type(exc).__name__}: {exc}"
    results.put(tally)


def drive(
    url: str,
    workers: int,
    epochs: int,
    *,
    batch: int = 1,
    resend: float = 0.0,
    processes: int = 1,
    think_s: float = 0.0,
    client: str = "aiohttp",
    on_reporting: Callable[[], object] = lambda: None,
) -> Tally:
    """Run `workers` simulated workers against the master at `url` until each of them
    reported `epochs` epochs and finished its trial.

    Args:
        batch: epochs a worker hands the wire at once (today sent one request each).
        resend: the share of report requests sent twice, as after a lost acknowledgement.
        processes: client processes to spread the workers over (1: this one).
        think_s: a pause before each batch, as a worker trains (0: a closed loop at full
            speed, where by Little's law mean latency = workers / reports per second).
        client: "aiohttp" or "httpx" (see CLIENTS).
        on_reporting: called once every worker has started, as reporting begins.
    """
    if workers < 1 or epochs < 1 or batch < 1 or not 1 <= processes <= workers:
        raise ValueError(
            "workers, epochs and batch must be >= 1 and 1 <= processes <= workers, but got "
            f"workers={workers}, epochs={epochs}, batch={batch}, processes={processes}"
        )
    if not 0 <= resend <= 1 or think_s < 0:
        raise ValueError(
            f"0 <= resend <= 1 and think_s >= 0 must hold, but got resend={resend}, "
            f"think_s={think_s}"
        )
    names = [f"sim{i}" for i in range(workers)]
    plan = _Plan(epochs, batch, resend, think_s)
    if processes == 1:
        return asyncio.run(_run_workers(client, url, names, plan, on_reporting))
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(processes + 1)
    results = ctx.Queue()
    clients = [
        ctx.Process(
            target=_client_process,
            args=(client, url, names[i::processes], plan, barrier, results),
            daemon=True,
        )
        for i in range(processes)
    ]
    for process in clients:
        process.start()
    parts: list[Tally | str] = []
    try:
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            pass  # a client failed before reporting: its message is on the queue
        else:
            on_reporting()
        parts = [results.get(timeout=3600) for _ in clients]
    finally:
        for process in clients:
            process.join(timeout=60)
    failures = [p for p in parts if isinstance(p, str)]
    if failures:
        raise RuntimeError(f"a client process failed: {failures[0]}")
    total = Tally()
    for part in parts:
        assert isinstance(part, Tally)
        total.merge(part)
    return total


# ---------------------------------------------------------------- ceilings

_CLAIM = b'{"action":"train","assignment":{"trial_id":1},"heartbeat_interval_s":5.0}'
_ACK = b'{"stored":true,"stop":false}'


def _canned(body: bytes) -> bytes:
    head = f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}"
    return head.encode() + b"\r\n\r\n" + body


class _NullHTTP(asyncio.Protocol):
    """HTTP/1.1 keep-alive with a canned answer per request: a claim gets trial 1,
    anything else an acknowledgement. No framework, no database: only the client costs."""

    claim = _canned(_CLAIM)
    ack = _canned(_ACK)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end_of_head := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end_of_head]
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            end = end_of_head + 4 + length
            if len(self.buffer) < end:
                return
            self.buffer = self.buffer[end:]
            self.transport.write(self.claim if b"/workers/claim" in head else self.ack)


def _serve_null(port: int, ready: Any) -> None:
    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_NullHTTP, "127.0.0.1", port, backlog=4096)
        ready.set()
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


def client_ceiling(
    workers: int, epochs: int, *, processes: int = 1, client: str = "aiohttp"
) -> dict[str, Any]:
    """The simulated workers against a null HTTP server in another process: the reports
    per second this client manages when the server costs (almost) nothing."""
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    port = free_port()
    server = ctx.Process(target=_serve_null, args=(port, ready), daemon=True)
    server.start()
    try:
        if not ready.wait(timeout=60):
            raise RuntimeError("the null server did not start")
        tally = drive(
            f"http://127.0.0.1:{port}", workers, epochs, processes=processes, client=client
        )
    finally:
        server.terminate()
        server.join(timeout=10)
    return tally.summary()


def closed_loop(
    url: str, path: str, connections: int, total: int, *, client: str = "aiohttp"
) -> dict[str, Any]:
    """`connections` clients GET `url + path` back to back, `total` requests in all: the
    requests per second and p50/p99 of one route (GET /api/v1/health: the master's HTTP
    stack without its database)."""

    async def run() -> dict[str, Any]:
        latencies: list[float] = []
        statuses: Counter[int] = Counter()
        left = total
        transport = open_transport(client, url, connections)

        async def one(worker: int) -> None:
            nonlocal left
            while left > 0:
                left -= 1
                sent = time.perf_counter()
                try:
                    status, _ = await transport.request(worker, "GET", path)
                except NoAnswer:
                    status = TRANSPORT_ERROR
                latencies.append(time.perf_counter() - sent)
                statuses[status] += 1

        try:
            await asyncio.gather(*(transport.request(i, "GET", path) for i in range(connections)))
            start = time.perf_counter()  # after every connection is open
            await asyncio.gather(*(one(i) for i in range(connections)))
            seconds = time.perf_counter() - start
        finally:
            await transport.close()
        return {
            "requests_per_s": len(latencies) / seconds,
            "p50_ms": 1000 * percentile(latencies, 0.5),
            "p99_ms": 1000 * percentile(latencies, 0.99),
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
        }

    return asyncio.run(run())
