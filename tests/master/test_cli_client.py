"""The CLI's typed client and its one road from a study to its result, against a
real master over HTTP with an in-process worker; a fake transport only for answers a
master never gives."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from gridless.common.errors import GridlessError
from gridless.master.app import create_app
from gridless.master.cli import app
from gridless.master.cli.client import ApiClient, ApiError
from gridless.master.cli.follow import follow, is_over
from gridless.master.schemas import StudyDetailPublic, TrialsPublic
from gridless.master.server import BackgroundServer
from gridless.worker.loop import run_worker
from tests.conftest import TINY_SPEC, Master
from tests.net import free_port

SPEC = {**TINY_SPEC, "stages": [{"trials": 3, "epochs": 1}, {"trials": 2, "epochs": 2}]}
CLI = Path(__file__).parents[2] / "master" / "cli"


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Master]:
    """A master whose one study ran to its end (5 trials, one worker in this process)."""
    m = Master(tmp_path_factory.mktemp("finished") / "run")
    m.server.start()
    try:
        with ApiClient(m.url) as client:
            client.create_study(SPEC)
        run_worker(m.url, m.store_root, "w1")
        yield m
    finally:
        m.server.stop()


def test_every_answer_is_the_apis_own_model_with_nothing_lost(finished: Master) -> None:
    with ApiClient(finished.url) as client, httpx.Client(base_url=finished.url) as raw:
        study = client.study(1)
        page = client.trials(1, limit=3)
        assert study.model_dump(mode="json") == raw.get("/api/v1/studies/1").json()
        assert page.model_dump(mode="json") == raw.get("/api/v1/studies/1/trials?limit=3").json()
        failed = client.trials(1, limit=5, state="failed", sort="-finished_at")
        workers = client.workers()
        best = page.data[0]
        kept = client.checkpoints(1, trial=best.number, limit=1)
        meta = client.checkpoint_meta(kept.data[0].path)
        content, sha256 = client.checkpoint_file(kept.data[0].path)
    assert isinstance(study, StudyDetailPublic)
    assert (study.state, study.finished_trials, study.total_trials) == ("completed", 5, 5)
    assert study.best_score == best.best_score
    assert isinstance(page, TrialsPublic)
    assert (page.count, [t.rank for t in page.data]) == (5, [1, 2, 3])
    assert (failed.count, failed.data) == (0, [])
    assert ([w.id for w in workers.data], workers.running) == (["w1"], [])
    assert (kept.data[0].trial_number, meta.params) == (best.number, best.params)
    assert hashlib.sha256(content).hexdigest() == sha256 == meta.sha256


def test_errors_carry_the_apis_status_and_message(master: Master) -> None:
    cases: list[tuple[Any, int, str, str]] = [
        (lambda c: c.study(99), 404, "no study 99", "GET /studies/99"),
        (
            lambda c: c.create_study({**SPEC, "learnin_rate": 1}),
            422,
            "learnin_rate: unknown key; check its spelling against the documented spec",
            "POST /studies",
        ),
        (lambda c: c.kill_worker("w9"), 404, "no running worker 'w9'", "DELETE /workers/w9"),
        (
            lambda c: c.launch_workers(1),
            409,
            "this master launches no workers (no launcher configured)",
            "POST /workers",
        ),
    ]
    with ApiClient(master.url) as client:
        for call, status, detail, where in cases:
            with pytest.raises(ApiError) as caught:
                call(client)
            assert (caught.value.status, caught.value.detail) == (status, detail)
            assert str(caught.value) == f"{where}: {status} {detail}"


def test_an_unreachable_master_is_an_api_error_without_a_status() -> None:
    port = free_port()
    with ApiClient(f"http://127.0.0.1:{port}/") as client, pytest.raises(ApiError) as caught:
        client.study(1)
    assert caught.value.status is None
    assert str(caught.value) == (
        f"cannot reach the master at http://127.0.0.1:{port}/api/v1/ (ConnectError)"
    )


def test_the_token_goes_with_every_request(tmp_path: Path) -> None:
    served = create_app(
        database_url=f"sqlite:///{tmp_path / 'gridless.db'}",
        store_root=tmp_path / "store",
        token="s3cret",
    )
    with BackgroundServer(served) as server:
        with ApiClient(server.url) as anonymous, pytest.raises(ApiError) as caught:
            anonymous.create_study(SPEC)
        assert (caught.value.status, caught.value.detail) == (
            401,
            "a valid bearer token is required for this request",
        )
        with ApiClient(server.url, "s3cret") as client:
            assert client.create_study(SPEC).name == "tiny"


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (200, "<html>proxy</html>", "GET /studies/1: the answer is not a StudyDetailPublic"),
        (200, '{"id": 1}', "GET /studies/1: the answer is not a StudyDetailPublic"),
        (502, "Bad Gateway", "GET /studies/1: 502 Bad Gateway"),
    ],
)
def test_an_answer_no_master_gives_is_an_api_error(status: int, body: str, message: str) -> None:
    transport = httpx.MockTransport(lambda _request: httpx.Response(status, text=body))
    with ApiClient("http://master", transport=transport) as client:
        with pytest.raises(ApiError) as caught:
            client.study(1)
    assert str(caught.value).startswith(message)
    assert caught.value.status == status


def _worker_once_the_study_exists(master: Master) -> threading.Thread:
    def work() -> None:
        with httpx.Client(base_url=master.url + "/api/v1") as raw:
            while raw.get("/studies").json()["count"] == 0:
                time.sleep(0.05)
        run_worker(master.url, master.store_root, "w1")

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def test_submit_follows_the_study_to_its_result_over_http(master: Master, tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC), encoding="utf-8")
    worker = _worker_once_the_study_exists(master)
    shown = CliRunner().invoke(
        app, ["submit", str(spec), "--url", master.url, "--top", "3"], env={"COLUMNS": "200"}
    )
    worker.join(timeout=120)
    assert shown.exit_code == 0, shown.output
    with ApiClient(master.url) as client:
        best = client.trials(1, limit=1).data[0]
        kept = client.checkpoints(1, trial=best.number).data
    (path,) = [c.path for c in kept if c.epoch == best.best_epoch]
    lines = shown.output.splitlines()
    assert f"study 1 (tiny) on {master.url}: dashboard at {master.url}/" in lines
    bar = next(line for line in lines if "5/5" in line)
    assert bar.startswith("done ")
    assert f"best {best.best_score:.4f}" in bar
    assert any("tiny: top 3 of 5 trials by val_accuracy" in line for line in lines)
    assert f"best checkpoint (trial {best.number}, epoch {best.best_epoch}): {path}" in lines


def test_following_a_run_fails_once_every_worker_ended(master: Master) -> None:
    with ApiClient(master.url) as client:
        client.create_study(SPEC)
        with pytest.raises(GridlessError, match="every worker ended before the study finished"):
            follow(client, 1, own_workers=True)


@pytest.mark.parametrize(
    ("state", "reason", "ends_on_pause", "over"),
    [
        ("running", None, False, False),
        ("running", None, True, False),
        ("paused", None, False, False),  # a person paused it: `submit` waits for a resume
        ("paused", None, True, True),  # `run` ends, and `gridless resume` goes on
        ("paused", "the first 5 trials all failed", False, True),  # the breaker
        ("completed", None, False, True),
        ("stopped", None, False, True),
    ],
)
def test_when_following_is_over(
    finished: Master, state: str, reason: str | None, ends_on_pause: bool, over: bool
) -> None:
    with ApiClient(finished.url) as client:
        study = client.study(1).model_copy(update={"state": state, "state_reason": reason})
    assert is_over(study, ends_on_pause=ends_on_pause) is over


def test_cli_modules_are_small_and_take_api_answers_as_typed() -> None:
    """The CLI's bounds: no CLI module over about 400 lines, no `assert isinstance`."""
    sizes = {p.name: len(p.read_text(encoding="utf-8").splitlines()) for p in CLI.glob("*.py")}
    assert max(sizes.values()) <= 400, sizes
    assert [p.name for p in CLI.glob("*.py") if "assert isinstance" in p.read_text()] == []
