"""Checkpoint browsing over real checkpoints: listing, metadata, download, resume, and
every traversal trick refused."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gridless.common.checkpoints import parse_name
from gridless.common.db import CheckpointRow, session_scope
from gridless.worker.loop import run_worker
from tests.conftest import Master, tiny_spec


@pytest.fixture
def ran(master: Master) -> Iterator[tuple[Master, httpx.Client]]:
    master.service.create_study(tiny_spec(early_stopping={"rule": "none"}))
    run_worker(master.url, master.store_root, "t1")
    with httpx.Client(base_url=master.url + "/api/v1", timeout=10) as api:
        yield master, api


def test_study_checkpoints_are_listed_best_first_like_their_names(
    ran: tuple[Master, httpx.Client],
) -> None:
    _, api = ran
    page = api.get("/studies/1/checkpoints").json()
    names = [c["name"] for c in page["data"]]
    assert page["count"] == len(names) >= 6
    assert [parse_name(n).score for n in names] == sorted(
        (parse_name(n).score for n in names), reverse=True
    )
    for c in page["data"]:
        assert c["name"] == c["path"].split("/")[-1]
        assert parse_name(c["name"]).score == round(c["score"], 4)
    one = api.get(
        "/studies/1/checkpoints", params={"trial_id": page["data"][0]["trial_id"]}
    ).json()
    assert {c["trial_id"] for c in one["data"]} == {page["data"][0]["trial_id"]}


def test_metadata_and_download_match_the_database(ran: tuple[Master, httpx.Client]) -> None:
    master, api = ran
    best = api.get("/studies/1/checkpoints").json()["data"][0]
    meta = api.get("/checkpoints/meta", params={"path": best["path"]}).json()
    assert meta["file_meta"]["epoch"] == best["epoch"]
    assert meta["file_meta"]["params"]["learning_rate"] == meta["params"]["learning_rate"]
    assert meta["metrics"]["val_accuracy"] == pytest.approx(best["score"])
    download = api.get("/checkpoints/file", params={"path": best["path"]})
    assert download.status_code == 200
    assert (
        hashlib.sha256(download.content).hexdigest()
        == best["sha256"]
        == download.headers["x-checkpoint-sha256"]
    )
    assert download.content == (master.store_root / best["path"]).read_bytes()


TRICKS = [
    "../gridless.db",
    "tiny/000000/../../gridless.db",
    "%2e%2e/gridless.db",
    "%252e%252e%252fgridless.db",
    "tiny%2F000000%2F..%2F..%2Fgridless.db",
    "..\\gridless.db",
    "tiny\\000000\\val0.5000_ep001.npz",
    "/etc/passwd",
    "//etc/passwd",
    "tiny/000000/",
    "tiny/000000/val9.9999_ep001.npz",
    "tiny/000000/val0.5000_ep001.npz\x00.txt",
]


@pytest.mark.parametrize("path", TRICKS)
@pytest.mark.parametrize("route", ["/checkpoints/file", "/checkpoints/meta"])
def test_traversal_attempts_are_refused(
    ran: tuple[Master, httpx.Client], route: str, path: str
) -> None:
    _, api = ran
    response = api.get(route, params={"path": path})
    assert 400 <= response.status_code < 500
    assert "root" not in response.text  # never a file's content or an internal path


def test_raw_encoded_traversal_in_the_url_is_refused(ran: tuple[Master, httpx.Client]) -> None:
    master, _ = ran
    for raw in (
        "path=..%2Fgridless.db",
        "path=%2e%2e%2fgridless.db",
        "path=%252e%252e%252fgridless.db",
        "path=%5C..%5Cgridless.db",
    ):
        response = httpx.get(f"{master.url}/api/v1/checkpoints/file?{raw}")
        assert response.status_code == 404, raw


def test_a_symlink_out_of_the_store_is_refused_even_when_recorded(
    ran: tuple[Master, httpx.Client], tmp_path: Path
) -> None:
    master, api = ran
    secret = tmp_path / "secret.txt"
    secret.write_text("do not serve")
    link = master.store_root / "tiny" / "000000" / "val0.9999_ep099.npz"
    link.symlink_to(secret)
    with session_scope(master.service.sessions) as s:
        s.add(
            CheckpointRow(
                trial_id=1,
                attempt=0,
                epoch=99,
                score=0.9999,
                path="tiny/000000/val0.9999_ep099.npz",
                size=12,
                sha256="0" * 64,
            )
        )
    response = api.get("/checkpoints/file", params={"path": "tiny/000000/val0.9999_ep099.npz"})
    assert (response.status_code, response.json()) == (
        404,
        {
            "detail": "checkpoint 'tiny/000000/val0.9999_ep099.npz' is recorded but missing from the store"
        },
    )
    assert "do not serve" not in response.text


def test_a_corrupted_file_is_refused(ran: tuple[Master, httpx.Client]) -> None:
    master, api = ran
    best = api.get("/studies/1/checkpoints").json()["data"][0]
    file = master.store_root / best["path"]
    file.write_bytes(file.read_bytes()[:-10])  # truncated
    response = api.get("/checkpoints/file", params={"path": best["path"]})
    assert (response.status_code, response.json()) == (
        409,
        {"detail": f"checkpoint {best['path']!r} does not match its recorded SHA-256"},
    )


def test_resume_from_a_chosen_checkpoint_continues_it(ran: tuple[Master, httpx.Client]) -> None:
    master, api = ran
    assert api.get("/studies/1").json()["state"] == "completed"
    chosen = api.get("/studies/1/checkpoints").json()["data"][-1]  # the worst one
    created = api.post("/checkpoints/resume", json={"path": chosen["path"], "epochs": 2})
    assert created.status_code == 201
    trial = created.json()
    assert (trial["parent_id"], trial["epochs"], trial["state"]) == (
        chosen["trial_id"],
        chosen["epoch"] + 2,
        "lost",
    )
    assert api.get("/studies/1").json()["state"] == "running"  # reopened for it
    run_worker(master.url, master.store_root, "t2")
    done = api.get(f"/trials/{trial['id']}").json()
    assert done["state"] == "completed"
    assert [m["epoch"] for m in done["metrics"]] == [chosen["epoch"] + 1, chosen["epoch"] + 2]
    assert api.get("/studies/1").json()["state"] == "completed"
    bad = api.post("/checkpoints/resume", json={"path": "../x.npz", "epochs": 2})
    assert (bad.status_code, bad.json()) == (404, {"detail": "no checkpoint '../x.npz'"})
    assert (
        api.post("/checkpoints/resume", json={"path": chosen["path"], "epochs": 0}).status_code
        == 422
    )


def test_checkpoints_cli_ls_show_get(ran: tuple[Master, httpx.Client], tmp_path: Path) -> None:
    master, api = ran
    best = api.get("/studies/1/checkpoints").json()["data"][0]
    env = {**os.environ, "COLUMNS": "200"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "gridless.master.cli",
                "checkpoints",
                *args,
                "--url",
                master.url,
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    listed = cli("ls", "1")
    assert listed.returncode == 0, listed.stderr
    assert best["path"] in listed.stdout
    shown = cli("show", best["path"])
    assert f'"epoch": {best["epoch"]}' in shown.stdout
    got = cli("get", best["path"], "-o", "ck.npz")
    assert got.returncode == 0, got.stderr
    assert hashlib.sha256((tmp_path / "ck.npz").read_bytes()).hexdigest() == best["sha256"]
    refused = cli("get", "../gridless.db")
    assert refused.returncode == 1
    assert "404 no checkpoint '../gridless.db'" in refused.stderr
    assert not (tmp_path / "gridless.db").exists()
