"""Loopback helpers for tests and benchmarks that start their own servers."""

from __future__ import annotations

import socket
import time
from typing import Any

import httpx

__all__ = ["free_port", "wait_for", "wait_for_master"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_master(url: str, timeout_s: float = 60) -> None:
    """Return once the master at `url` answers its health check.

    Raises:
        RuntimeError: when it does not within `timeout_s`.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"{url}/api/v1/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"no master answered at {url} within {timeout_s:g} s")
        time.sleep(0.1)


def wait_for(predicate: Any, timeout_s: float, what: str) -> Any:
    """Poll `predicate` until it returns something truthy (returned); fail after
    `timeout_s` naming `what`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
