"""A loopback HTTP proxy that tests put between workers and the master: it records
what the master acknowledged and can cut the connection on command."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

__all__ = ["Ack", "RecordingProxy"]

_REPORT = re.compile(r"^/api/v1/trials/(\d+)/reports$")
_HOP_HEADERS = {"host", "content-length", "connection", "transfer-encoding", "keep-alive"}


@dataclass(frozen=True)
class Ack:
    """An epoch report the master answered with 200: (trial, epoch) and what was sent."""

    trial_id: int
    epoch: int
    attempt: int
    val_accuracy: float | None


class RecordingProxy:
    """Forwards every request to `target`; `acks` lists the reports the master
    acknowledged (as the worker saw the answer). `cut()` makes every request fail with a
    dropped connection until `restore()`; `cut_after_forwarding()` lets the master
    process the request but drops its answer (the worker must resend)."""

    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.acks: list[Ack] = []
        self.lock = threading.Lock()
        self.mode = "open"  # open | cut | drop_answers
        self.dropped = 0
        self._client = httpx.Client(timeout=60)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if proxy.mode == "cut":
                    proxy.dropped += 1
                    self.close_connection = True
                    self.connection.close()
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
                try:
                    answer = proxy._client.request(
                        self.command, proxy.target + self.path, content=body, headers=headers
                    )
                except httpx.TransportError:
                    self.close_connection = True
                    self.connection.close()
                    return
                if proxy.mode == "drop_answers":
                    proxy.dropped += 1
                    self.close_connection = True
                    self.connection.close()
                    return
                match = _REPORT.match(self.path.split("?")[0])
                if match and answer.status_code == 200:
                    sent = json.loads(body)
                    with proxy.lock:
                        proxy.acks.append(
                            Ack(
                                int(match[1]),
                                int(sent["epoch"]),
                                int(sent["attempt"]),
                                sent.get("val_accuracy"),
                            )
                        )
                self.send_response(answer.status_code)
                for key, value in answer.headers.items():
                    if key.lower() not in _HOP_HEADERS:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = do_DELETE = do_PUT = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> RecordingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._client.close()

    def cut(self) -> None:
        self.mode = "cut"

    def drop_answers(self) -> None:
        self.mode = "drop_answers"

    def restore(self) -> None:
        self.mode = "open"

    def acked(self) -> list[Ack]:
        with self.lock:
            return list(self.acks)
