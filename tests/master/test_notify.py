"""Notifications against a real receiver (an HTTP server on 127.0.0.1 in the
test) from a real master running real studies with a real worker: one POST per event,
a retry after a 500, and a dead receiver that never hurts the study."""

from __future__ import annotations

import json
import socket
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from gridless.common.spec import parse_spec
from gridless.master.notify import Notifier, redact_url
from gridless.worker.loop import run_worker
from tests.conftest import Master

pytestmark = [pytest.mark.slow]

FUNCTIONS = '''
import math


def rising(trial):
    """The score grows with x, so the best x sits on the upper border; trial 2 raises
    (with a Slack mention in its message), trial 3 diverges."""
    if trial.number == 2:
        raise RuntimeError("<!channel> trial 2 breaks on purpose")
    for epoch in trial.epochs():
        loss = math.nan if trial.number == 3 else 1.0 - trial.params["x"] / 10
        trial.report(epoch, score=trial.params["x"] / 10 + 0.01 * epoch, val_loss=loss)
'''


class Receiver:
    """A webhook receiver: records every POST (its JSON body) and answers the statuses
    of `answers` in turn, then 200."""

    def __init__(self, answers: list[int] | None = None) -> None:
        self.posts: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        self.answers = list(answers or [])
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    status = receiver.answers.pop(0) if receiver.answers else 200
                    receiver.posts.append(
                        {
                            "path": self.path,
                            "type": self.headers["Content-Type"],
                            **json.loads(body),
                        }
                    )
                    receiver.statuses.append(status)
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/T000/B000/secret"

    def delivered(self) -> list[dict[str, Any]]:
        """The POSTs answered 2xx."""
        with self.lock:
            return [p for p, s in zip(self.posts, self.statuses, strict=True) if s < 300]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def functions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    folder = tmp_path / "user"
    folder.mkdir()
    (folder / "notify_functions.py").write_text(textwrap.dedent(FUNCTIONS))
    monkeypatch.syspath_prepend(str(folder))
    return "notify_functions:rising"


def study_spec(train: str, url: str, **changes: Any) -> Any:
    return parse_spec(
        {
            "name": "notified",
            "train": train,
            "metric": {"name": "score", "mode": "max"},
            "seed": 5,
            "space": {"x": {"uniform": [0.0, 10.0]}},
            "enqueue": [{"x": 10.0}],  # the best, on the upper border: a flag, always
            "stages": [{"trials": 6, "epochs": 1}],
            "early_stopping": {"rule": "none"},
            "notify": {"url": url},
            **changes,
        }
    )


def fast(master: Master, **settings: Any) -> Notifier:
    """The master's notifier, retrying within a test's patience."""
    notifier: Notifier = master.app.state.notifier
    for key, value in {"backoff_s": 0.05, **settings}.items():
        setattr(notifier, key, value)
    return notifier


def drained(notifier: Notifier) -> None:
    """Wait until every queued notification was delivered or given up."""
    assert notifier.flush(timeout_s=60)


def test_one_post_per_event_of_a_real_study(
    master: Master, receiver: Receiver, functions: str
) -> None:
    notifier = fast(master)
    master.service.create_study(study_spec(functions, receiver.url))
    run_worker(master.url, master.store_root, "w1")
    assert master.service.progress(1).state == "completed"
    drained(notifier)

    posts = receiver.delivered()
    assert [p["event"] for p in posts] == ["failed", "finished", "border"], posts
    assert all(p["path"] == "/hooks/T000/B000/secret" for p in posts)
    assert all(p["type"] == "application/json" for p in posts)
    failed, finished, border = posts
    assert (failed["study_id"], failed["study"]) == (1, "notified")
    assert (failed["trial"], failed["suppressed"]) == (2, 0)
    assert "trial 2 breaks on purpose" in failed["error"]
    # Slack would ping the channel for <!channel>: the text escapes it, as Slack asks.
    assert failed["text"] == (
        "gridless: study notified (id 1): trial 2 failed: "
        "RuntimeError: &lt;!channel&gt; trial 2 breaks on purpose"
    )

    assert finished["state"] == "completed"
    assert finished["trials"] == {"completed": 4, "diverged": 1, "failed": 1}
    assert (finished["best_trial"], finished["metric"]) == (0, "score")
    assert finished["best_score"] == pytest.approx(1.01)
    assert finished["text"] == (
        "gridless: study notified (id 1) completed: 6 trials (4 completed, 1 diverged, "
        "1 failed), best score 1.01 (trial 0)"
    )

    flags = httpx.get(f"{master.url}/api/v1/studies/1/flags").json()["data"]
    assert border["stage"] == 1
    assert border["flags"] == [
        {k: v for k, v in f.items() if k not in ("stage", "final")} for f in flags
    ]
    assert border["message"] == flags[0]["message"]
    assert "best x 10 is on the upper border" in border["text"]
    assert (notifier.sent, notifier.given_up, notifier.dropped) == (3, 0, 0)


def test_only_the_events_asked_for_are_posted(
    master: Master, receiver: Receiver, functions: str
) -> None:
    notifier = fast(master)
    spec = study_spec(functions, receiver.url, notify={"url": receiver.url, "on": ["border"]})
    master.service.create_study(spec)
    run_worker(master.url, master.store_root, "w1")
    drained(notifier)
    assert [p["event"] for p in receiver.delivered()] == ["border"]


def test_a_receiver_that_answers_500_then_200_gets_the_event_once(
    master: Master, functions: str
) -> None:
    receiver = Receiver(answers=[500])
    try:
        notifier = fast(master)
        spec = study_spec(
            functions, receiver.url, notify={"url": receiver.url, "on": ["finished"]}
        )
        master.service.create_study(spec)
        run_worker(master.url, master.store_root, "w1")
        drained(notifier)
        assert receiver.statuses == [500, 200]
        assert receiver.posts[0] == receiver.posts[1]  # the same event, tried again
        assert [p["event"] for p in receiver.delivered()] == ["finished"]
        assert (notifier.sent, notifier.given_up) == (1, 0)
    finally:
        receiver.close()


def test_an_unreachable_receiver_leaves_the_study_completing(
    master: Master, functions: str
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
    notifier = fast(master, tries=3)
    master.service.create_study(study_spec(functions, dead))
    run_worker(master.url, master.store_root, "w1")
    detail = httpx.get(f"{master.url}/api/v1/studies/1").json()
    assert (detail["state"], detail["finished_trials"]) == ("completed", 6)
    drained(notifier)
    assert (notifier.sent, notifier.given_up) == (0, 3)


def test_a_person_stopping_a_study_is_posted_once(master: Master, receiver: Receiver) -> None:
    notifier = fast(master)
    spec = study_spec("notify_functions:rising", receiver.url, notify={"url": receiver.url})
    master.service.create_study(spec)
    stopped = httpx.post(f"{master.url}/api/v1/studies/1/stop")
    assert stopped.status_code == 200
    again = httpx.post(f"{master.url}/api/v1/studies/1/stop")
    assert again.status_code == 409
    drained(notifier)
    (post,) = receiver.delivered()
    assert (post["event"], post["state"], post["trials"]) == ("finished", "stopped", {})
    assert post["text"] == "gridless: study notified (id 1) stopped: 0 trials (none)"


def test_failures_are_throttled_per_study(receiver: Receiver) -> None:
    notifier = Notifier(backoff_s=0.05, failed_every_s=3600)
    payload = {"event": "failed", "text": "trial failed", "suppressed": 0}
    assert notifier.send_failure(receiver.url, 1, {**payload, "trial": 1})
    assert not notifier.send_failure(receiver.url, 1, {**payload, "trial": 2})
    assert not notifier.send_failure(receiver.url, 1, {**payload, "trial": 3})
    assert notifier.send_failure(receiver.url, 2, {**payload, "trial": 1})  # another study
    notifier.failed_every_s = 0  # the minute has passed
    assert notifier.send_failure(receiver.url, 1, {**payload, "trial": 4})
    drained(notifier)
    posts = receiver.delivered()
    assert [(p["trial"], p["suppressed"]) for p in posts] == [(1, 0), (1, 0), (4, 2)]
    assert posts[-1]["text"] == "trial failed (2 more failed since the last notice)"


def test_a_full_queue_drops_and_a_refusal_is_not_retried(receiver: Receiver) -> None:
    notifier = Notifier(queue_size=1, backoff_s=0.05)
    notifier._start = lambda: None  # type: ignore[method-assign]  # hold the thread back
    assert notifier.send(receiver.url, {"event": "finished", "n": 1})
    assert not notifier.send(receiver.url, {"event": "finished", "n": 2})
    assert notifier.dropped == 1
    refusing = Receiver(answers=[404])
    try:
        other = Notifier(backoff_s=0.05)
        other.send(refusing.url, {"event": "finished"})
        drained(other)
        assert refusing.statuses == [404]  # a 4xx other than 408/429 is not retried
        assert (other.sent, other.given_up) == (0, 1)
    finally:
        refusing.close()


def test_notify_is_validated_and_its_secret_never_shown(master: Master) -> None:
    api = httpx.Client(base_url=master.url + "/api/v1", timeout=30)
    base = {
        "name": "n",
        "space": {"lr": {"log_uniform": [1e-3, 1.0]}},
        "stages": [{"trials": 1, "epochs": 1}],
    }
    for notify, detail in [
        (
            {"url": "ftp://x/y"},
            "notify.url: must be an http:// or https:// URL with a host, but got 'ftp://x/y'",
        ),
        (
            {"url": "https://"},
            "notify.url: must be an http:// or https:// URL with a host, but got 'https://'",
        ),
        (
            {"url": "https://h/x", "on": []},
            "notify.on: name at least one of finished, failed, border",
        ),
        (
            {"url": "https://h/x", "on": ["finished", "finished"]},
            "notify.on: each event once, but got ['finished', 'finished']",
        ),
        (
            {"url": "https://h/x", "on": ["started"]},
            "notify.on.0: Input should be 'finished', 'failed' or 'border'",
        ),
        (
            {"url": "https://h/x", "to": "me"},
            "notify.to: unknown key; check its spelling against the documented spec",
        ),
        ({"on": ["failed"]}, "notify.url: Field required"),
    ]:
        response = api.post("/studies", json={**base, "notify": notify})
        assert (response.status_code, response.json()) == (422, {"detail": detail})
    secret = "https://hooks.slack.com/services/T000/B000/XXXXSECRET"
    created = api.post("/studies", json={**base, "notify": {"url": secret}})
    assert created.status_code == 201
    assert created.json()["spec"]["notify"] == {
        "url": "https://hooks.slack.com/...",
        "on": ["finished", "failed", "border"],
    }
    for path in ("/studies/1", "/studies"):
        assert "XXXXSECRET" not in api.get(path).text
    assert redact_url("https://h.example:8443/a?b=c") == "https://h.example:8443/..."
    assert redact_url("https://h.example") == "https://h.example"
    api.close()
