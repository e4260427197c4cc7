"""Hostile input against a real master over HTTP: non-finite numbers, huge and deeply
nested bodies, odd names, sort and filter injection, Host and Origin checks (DNS
rebinding, cross-site requests), no CORS, and error bodies that never leak internals."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gridless.common.checkpoints import trial_folder
from gridless.master.app import create_app
from gridless.master.server import BackgroundServer
from tests.conftest import TINY_SPEC, Master


@pytest.fixture
def api(master: Master) -> Iterator[httpx.Client]:
    master.service.create_study(master_spec())
    with httpx.Client(base_url=master.url + "/api/v1", timeout=30) as client:
        yield client


def master_spec() -> Any:
    from tests.conftest import tiny_spec

    return tiny_spec()


def _no_leak(response: httpx.Response, *secrets: str) -> None:
    """A 4xx/5xx body is one JSON detail: no traceback, no file path, no secrets."""
    text = response.text
    assert "Traceback" not in text
    assert "/work/" not in text
    assert "/tmp/" not in text
    assert ".py" not in text
    for secret in secrets:
        assert secret not in text
    assert set(response.json()) == {"detail"}


def _claimed_trial(api: httpx.Client) -> int:
    answer = api.post("/workers/claim", json={"worker_id": "w1"}).json()
    trial_id = int(answer["assignment"]["trial_id"])
    started = api.post(
        f"/trials/{trial_id}/start", json={"worker_id": "w1", "attempt": 0, "params": {}}
    )
    assert started.status_code == 200
    return trial_id


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e309"])
def test_non_finite_numbers_in_a_spec_are_refused(api: httpx.Client, token: str) -> None:
    spec = json.dumps({**TINY_SPEC, "name": "nonfinite"})
    for body in (
        spec.replace(
            '"learning_rate": {"log_uniform": [0.01, 1.0]}',
            f'"learning_rate": {{"log_uniform": [0.01, {token}]}}',
        ),
        spec.replace('"seed": 3', f'"fixed": {{"dropout": {token}}}, "seed": 3'),
    ):
        assert body != spec
        response = api.post("/studies", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 422, response.text
        assert "finite" in response.json()["detail"]
        _no_leak(response)
    assert api.get("/studies").json()["count"] == 1  # nothing was created


@pytest.mark.parametrize("token", ["NaN", "Infinity", "1e309"])
@pytest.mark.parametrize("field", ["train_loss", "val_loss", "val_accuracy", "stats"])
def test_non_finite_numbers_in_a_report_are_refused(
    api: httpx.Client, token: str, field: str
) -> None:
    trial_id = _claimed_trial(api)
    value = f'{{"loss_history": [1.0, {token}]}}' if field == "stats" else token
    body = f'{{"worker_id": "w1", "attempt": 0, "epoch": 1, "seconds": 0.1, "{field}": {value}}}'
    response = api.post(
        f"/trials/{trial_id}/reports", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    _no_leak(response)
    assert api.get(f"/trials/{trial_id}/metrics").json() == []


def test_a_report_cannot_nest_deeper_than_the_limit(api: httpx.Client) -> None:
    trial_id = _claimed_trial(api)
    deep: Any = 1.0
    for _ in range(40):
        deep = {"x": deep}
    body = {"worker_id": "w1", "attempt": 0, "epoch": 1, "stats": deep}
    response = api.post(f"/trials/{trial_id}/reports", json=body)
    assert response.status_code == 422
    assert "nested deeper than 32 levels" in response.json()["detail"]


@pytest.mark.parametrize("depth", [100, 100_000])
def test_pathologically_nested_json_is_a_client_error(api: httpx.Client, depth: int) -> None:
    body = "[" * depth + "]" * depth
    for path in ("/studies", "/workers/claim", "/trials/1/reports"):
        response = api.post(path, content=body, headers={"content-type": "application/json"})
        assert 400 <= response.status_code < 500, (path, response.status_code)
        _no_leak(response)


def test_huge_bodies_get_413_by_length_and_when_chunked(api: httpx.Client) -> None:
    big = b'{"worker_id": "w1", "pad": "' + b"x" * (5 * 1024 * 1024) + b'"}'
    response = api.post(
        "/workers/claim", content=big, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json() == {"detail": "the body exceeds 4194304 bytes"}

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"worker_id": "w1", "pad": "'
        for _ in range(80):
            yield b"x" * 65536
        yield b'"}'

    response = api.post("/studies", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert api.get("/health").status_code == 200


@pytest.mark.parametrize(
    "name",
    ["../escape", "a/b", "..", "\u202egnp.exe", "tab\there", "nul\x00", "é", "x" * 65, " lead"],
)
def test_odd_study_and_worker_names_are_refused(api: httpx.Client, name: str) -> None:
    response = api.post("/studies", json={**TINY_SPEC, "name": name})
    assert response.status_code == 422, name
    _no_leak(response)
    response = api.post("/workers/claim", json={"worker_id": name})
    assert response.status_code == 422, name


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"sort": "best_score; DROP TABLE trials"}, "is not sortable"),
        ({"sort": "params.learning_rate) OR (1=1"}, "sort"),
        ({"sort": "__class__"}, "is not sortable"),
        ({"param": "learning_rate:0:1 OR 1=1"}, "param"),
        ({"param": "x' OR '1'='1:0:1"}, "param"),
        ({"state": "running' OR '1'='1"}, "query.state"),
    ],
)
def test_sort_and_filter_injection_is_refused(
    api: httpx.Client, params: dict[str, str], fragment: str
) -> None:
    response = api.get("/studies/1/trials", params=params)
    assert response.status_code == 422, response.text
    assert fragment in response.json()["detail"]
    assert api.get("/studies/1/trials").status_code == 200  # the table is still there


def _raw(port: int, request: bytes) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return int(data.split(b" ", 2)[1]), data


def test_a_rebound_host_name_is_refused_and_ip_literals_and_localhost_pass(master: Master) -> None:
    port = int(master.url.rsplit(":", 1)[1])
    for host in ("attacker.example", "localhost.attacker.example", "127.0.0.1.nip.io"):
        status, _ = _raw(port, f"GET /api/v1/health HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        assert status == 421, host
        status, _ = _raw(
            port, f"GET /api/v1/studies HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
        )
        assert status == 421, host
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "[::1]", "127.0.0.1"):
        status, _ = _raw(port, f"GET /api/v1/health HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        assert status == 200, host


def test_allowed_hosts_admit_a_named_master(tmp_path: Path) -> None:
    app = create_app(
        database_url=f"sqlite:///{tmp_path / 'g.db'}",
        store_root=tmp_path / "store",
        allowed_hosts=["gridless-master"],
    )
    with BackgroundServer(app) as server:
        ok = httpx.get(server.url + "/api/v1/health", headers={"Host": "gridless-master:8765"})
        assert ok.status_code == 200
        refused = httpx.get(server.url + "/api/v1/health", headers={"Host": "other-name"})
        assert refused.status_code == 421


def test_cross_origin_requests_cannot_change_state_and_get_no_cors(
    api: httpx.Client, master: Master
) -> None:
    evil = {"Origin": "http://attacker.example"}
    for path, body in [("/workers/claim", {"worker_id": "w1"}), ("/studies/1/stop", None)]:
        response = api.post(path, json=body, headers=evil)
        assert response.status_code == 403
        assert response.json() == {"detail": "cross-origin requests may not change state"}
        site = api.post(path, json=body, headers={"Sec-Fetch-Site": "cross-site"})
        assert site.status_code == 403
    assert api.get("/studies/1").json()["state"] == "running"
    # The dashboard's own origin may (same scheme, host and port).
    same = api.post("/studies/1/pause", headers={"Origin": master.url})
    assert same.status_code == 200
    # No CORS: no Access-Control-* header, not even for a preflight.
    for response in (
        api.get("/studies", headers=evil),
        api.options("/studies", headers={**evil, "Access-Control-Request-Method": "POST"}),
    ):
        assert not any(h.lower().startswith("access-control-") for h in response.headers)


def test_error_bodies_carry_no_traceback_path_or_token(tmp_path: Path) -> None:
    app = create_app(
        database_url=f"sqlite:///{tmp_path / 'g.db'}",
        store_root=tmp_path / "store",
        token="s3cret-token",
    )
    with BackgroundServer(app) as server:
        base = server.url + "/api/v1"
        responses = [
            httpx.get(base + "/studies/999"),
            httpx.get(base + "/trials/abc"),
            httpx.get(base + "/checkpoints/file", params={"path": "../../etc/passwd"}),
            httpx.post(
                base + "/studies",
                json={"name": "x"},
                headers={"Authorization": "Bearer s3cret-token"},
            ),
            httpx.post(
                base + "/studies",
                json={"name": "x"},
                headers={"Authorization": "Bearer s3cret-tokeX"},
            ),
            httpx.post(
                base + "/studies",
                content=b"{not json",
                headers={
                    "Authorization": "Bearer s3cret-token",
                    "content-type": "application/json",
                },
            ),
        ]
        # The database disappearing under the master: a 503 that names no file.
        (tmp_path / "g.db").unlink()
        (tmp_path / "g.db-wal").unlink(missing_ok=True)
        (tmp_path / "g.db-shm").unlink(missing_ok=True)
        app.state.engine.dispose()
        (tmp_path / "g.db").mkdir()  # now not even a file SQLite could create
        broken = httpx.get(base + "/studies")
        responses.append(broken)
    assert broken.status_code == 503
    for response in responses:
        assert 400 <= response.status_code < 600
        _no_leak(response, "s3cret-token", str(tmp_path))


class _Marker:
    """Unpickling this writes a file: the proof that something was unpickled."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (Path(self.target), "unpickled!"))


@pytest.mark.parametrize("suffix", ["npz", "pt"])
def test_a_planted_pickle_checkpoint_is_never_unpickled(
    api: httpx.Client, master: Master, tmp_path: Path, suffix: str
) -> None:
    import hashlib
    import io
    import pickle

    import numpy as np

    marker = tmp_path / "pwned"
    if suffix == "npz":
        buffer = io.BytesIO()
        evil = np.empty(1, dtype=object)
        evil[0] = _Marker(str(marker))
        np.savez(buffer, __meta__=evil, w=np.ones(3))  # an object array is a pickle
        payload = buffer.getvalue()
    else:
        payload = pickle.dumps({"meta": _Marker(str(marker))})
    assert b"write_text" in payload
    trial_id = _claimed_trial(api)
    name = f"val0.5000_ep001.{suffix}"
    folder = Path(master.store_root) / "tiny" / trial_folder(0)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(payload)
    relpath = f"tiny/000000/{name}"
    checkpoint = {
        "relpath": relpath,
        "size": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(),
    }
    report = {
        "worker_id": "w1",
        "attempt": 0,
        "epoch": 1,
        "val_accuracy": 0.5,
        "checkpoint": checkpoint,
    }
    assert api.post(f"/trials/{trial_id}/reports", json=report).status_code == 200
    meta = api.get("/checkpoints/meta", params={"path": relpath})
    assert 400 <= meta.status_code < 500, meta.text
    assert "pickle" in meta.json()["detail"]
    assert not marker.exists()
    # Downloading hands over the bytes without reading them.
    download = api.get("/checkpoints/file", params={"path": relpath})
    assert download.content == payload
    assert not marker.exists()


def test_the_token_is_never_logged(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.net import free_port, wait_for_master

    port = free_port()
    token = "tok-" + "z" * 40
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "master.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gridless.master.cli",
                "master",
                str(tmp_path / "run"),
                "--new",
                "--port",
                str(port),
            ],
            env={**__import__("os").environ, "GRIDLESS_TOKEN": token},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_master(url)
            auth = {"Authorization": f"Bearer {token}"}
            httpx.post(url + "/api/v1/studies", json=TINY_SPEC, headers=auth)
            httpx.post(url + "/api/v1/studies", json=TINY_SPEC, headers=auth)  # 409
            httpx.post(
                url + "/api/v1/studies/1/pause", headers={"Authorization": f"Bearer {token}x"}
            )
            httpx.get(url + f"/api/v1/studies?token={token}")
        finally:
            server.terminate()
            server.wait(timeout=60)
    text = log.read_text()
    assert "serving" in text
    assert token not in text.replace(f"token={token}", "")  # the header's token: never


ROUTES = {
    ("DELETE", "/api/v1/workers"),
    ("DELETE", "/api/v1/workers/{worker_id}"),
    ("GET", "/api/v1/checkpoints/file"),
    ("GET", "/api/v1/checkpoints/meta"),
    ("GET", "/api/v1/health"),
    ("GET", "/api/v1/studies"),
    ("GET", "/api/v1/studies/{study_id}"),
    ("GET", "/api/v1/studies/{study_id}/checkpoints"),
    ("GET", "/api/v1/studies/{study_id}/ensembles"),
    ("GET", "/api/v1/studies/{study_id}/ensembles/jobs"),
    ("GET", "/api/v1/studies/{study_id}/ensembles/jobs/{job_id}"),
    ("GET", "/api/v1/studies/{study_id}/flags"),
    ("GET", "/api/v1/studies/{study_id}/importance"),
    ("GET", "/api/v1/studies/{study_id}/points"),
    ("GET", "/api/v1/studies/{study_id}/pareto"),
    ("GET", "/api/v1/studies/{study_id}/stages"),
    ("GET", "/api/v1/studies/{study_id}/trials"),
    ("GET", "/api/v1/studies/{study_id}/trials/{number}"),
    ("GET", "/api/v1/studies/{study_id}/trials/{number}/log"),
    ("GET", "/api/v1/studies/{study_id}/warnings"),
    ("GET", "/api/v1/trials/{trial_id}"),
    ("GET", "/api/v1/trials/{trial_id}/checkpoints"),
    ("GET", "/api/v1/trials/{trial_id}/log"),
    ("GET", "/api/v1/trials/{trial_id}/metrics"),
    ("GET", "/api/v1/workers"),
    ("POST", "/api/v1/checkpoints/resume"),
    ("POST", "/api/v1/studies"),
    ("POST", "/api/v1/studies/{study_id}/ensembles"),
    ("POST", "/api/v1/studies/{study_id}/pause"),
    ("POST", "/api/v1/studies/{study_id}/resume"),
    ("POST", "/api/v1/studies/{study_id}/stop"),
    ("POST", "/api/v1/trials/{trial_id}/finish"),
    ("POST", "/api/v1/trials/{trial_id}/reports"),
    ("POST", "/api/v1/trials/{trial_id}/reports/batch"),
    ("POST", "/api/v1/studies/{study_id}/stages"),
    ("PATCH", "/api/v1/studies/{study_id}/space"),
    ("POST", "/api/v1/studies/{study_id}/trials"),
    ("GET", "/api/v1/studies/compare"),
    ("POST", "/api/v1/trials/{trial_id}/start"),
    ("POST", "/api/v1/workers"),
    ("POST", "/api/v1/workers/claim"),
    ("POST", "/api/v1/workers/heartbeat"),
}


def test_no_route_runs_a_command(api: httpx.Client, master: Master) -> None:
    """The API is exactly this list (a new route must be reviewed here), and launching
    workers takes a count and nothing else: no command, no entry point, no environment."""
    schema = httpx.get(master.url + "/openapi.json").json()
    served = {(m.upper(), p) for p, ops in schema["paths"].items() for m in ops}
    assert served == ROUTES
    for extra in ({"command": "touch /tmp/x"}, {"entrypoint": "x"}, {"env": {"A": "1"}}):
        response = api.post("/workers", json={"count": 1, **extra})
        assert response.status_code == 422, extra
