"""A throwaway S3-compatible server for tests: moto's server on a free loopback port."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

import httpx

from tests.net import free_port

__all__ = ["S3Server"]


class S3Server:
    """One moto server; `new_bucket()` gives every test a bucket of its own."""

    key = "gridless-test"
    secret = "gridless-test-secret"

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(self.endpoint, timeout=1)
                break
            except httpx.TransportError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("the moto S3 server did not start") from None
                time.sleep(0.1)

    @property
    def options(self) -> dict[str, str]:
        """fsspec/s3fs options that reach this server."""
        return {"endpoint_url": self.endpoint, "key": self.key, "secret": self.secret}

    @property
    def options_json(self) -> str:
        """The options as `GRIDLESS_STORE_OPTIONS` carries them."""
        return json.dumps(self.options)

    def new_bucket(self) -> str:
        """Create an empty bucket; its name."""
        import s3fs

        name = f"gridless-{uuid.uuid4().hex[:12]}"
        s3fs.S3FileSystem(**self.options).mkdir(name)
        return name

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
