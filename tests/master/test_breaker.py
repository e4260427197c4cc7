"""The circuit breaker: pure rule as a boundary table, then through a real
master with a user's function that always raises."""

from __future__ import annotations

import textwrap
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from gridless.common.spec import FailureSpec, parse_spec
from gridless.master.breaker import breaker_reason
from gridless.master.cli import app
from gridless.worker.client import MasterClient
from gridless.worker.loop import run_worker
from tests.conftest import Master

F, C = "failed", "completed"
POLICY = FailureSpec(first=3, window=4, max_rate=0.5)


@pytest.mark.parametrize(
    ("states", "trips"),
    [
        ([F, F], None),  # not yet K finished
        ([F, F, F], "the first 3 trials all failed"),
        ([F, F, C], None),
        ([C, F, F], None),  # the first K did not all fail; 2 of 3 is below the window
        ([C, F, C, F], "2 of the last 4 trials failed (the limit is 50%)"),  # exactly 50%
        ([C, F, C, C], None),
        ([F, C, C, C, F, F], "2 of the last 4 trials failed"),
        ([F, C, C, C, C, F], None),
    ],
)
def test_the_breaker_trips_on_the_first_k_or_the_window(
    states: list[str], trips: str | None
) -> None:
    finished = [
        (n, s, f"RuntimeError: boom {n}" if s == F else None) for n, s in enumerate(states)
    ]
    reason = breaker_reason(finished, POLICY)
    if trips is None:
        assert reason is None
    else:
        assert reason is not None
        assert reason.startswith(trips)
        assert "; the last said: RuntimeError: boom " in reason


ALWAYS = """
def main(trial):
    print("about to fail")
    raise ValueError(f"my loader is broken (lr={trial.params['lr']:.2g})")
"""


@pytest.fixture
def user_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "user"
    folder.mkdir()
    (folder / "always.py").write_text(textwrap.dedent(ALWAYS))
    monkeypatch.syspath_prepend(str(folder))


def spec(train: str, **changes: object) -> object:
    return parse_spec(
        {
            "name": "breaker",
            "train": train,
            "metric": "val_loss",
            "space": {"lr": {"log_uniform": [1e-4, 1.0]}},
            "stages": [{"trials": 20, "epochs": 1}, {"trials": 5, "epochs": 2}],
            **changes,
        }
    )


def test_a_function_that_always_raises_pauses_the_study_after_k(
    master: Master, user_code: None
) -> None:
    study = master.service.create_study(spec("always:main"))
    assert run_worker(master.url, master.store_root, "t1", max_trials=5) == 5
    detail = httpx.get(f"{master.url}/api/v1/studies/{study.id}").json()
    assert detail["state"] == "paused"
    assert detail["state_reason"].startswith(
        "the first 5 trials all failed; the last said: ValueError: my loader is broken (lr="
    )
    assert detail["finished_trials"] == 5  # the budget of 25 is not burnt
    client = MasterClient(master.url)
    try:
        assert client.claim("t2").action == "wait"  # no sixth trial
    finally:
        client.close()

    status = CliRunner().invoke(app, ["status", str(study.id), "--url", master.url])
    assert status.exit_code == 0, status.output
    assert "study paused" in status.output
    assert "the first 5 trials all failed" in status.output
    assert "trial 0: ValueError: my loader is broken" in status.output
    for number in range(5):  # the log is complete before the study pauses, the last too
        log = httpx.get(f"{master.url}/api/v1/studies/{study.id}/trials/{number}/log").text
        assert "about to fail" in log
        assert "ValueError: my loader is broken" in log

    resumed = httpx.post(f"{master.url}/api/v1/studies/{study.id}/resume").json()
    assert (resumed["state"], resumed["state_reason"]) == ("running", None)
    # counting starts afresh: four more failures do not trip it again
    assert run_worker(master.url, master.store_root, "t1", max_trials=4) == 4
    assert httpx.get(f"{master.url}/api/v1/studies/{study.id}").json()["state"] == "running"


def test_training_code_that_does_not_import_pauses_at_the_first_trial(master: Master) -> None:
    study = master.service.create_study(spec("not_installed_anywhere:main"))
    run_worker(master.url, master.store_root, "t1", max_trials=1)
    detail = httpx.get(f"{master.url}/api/v1/studies/{study.id}").json()
    assert detail["state"] == "paused"
    assert "trial 0 could not load the training code" in detail["state_reason"]
    assert "cannot import 'not_installed_anywhere'" in detail["state_reason"]


def test_the_breaker_is_configurable(master: Master, user_code: None) -> None:
    study = master.service.create_study(
        spec("always:main", failures={"first": 2, "window": 20, "max_rate": 1.0})
    )
    run_worker(master.url, master.store_root, "t1", max_trials=2)
    detail = httpx.get(f"{master.url}/api/v1/studies/{study.id}").json()
    assert detail["state_reason"].startswith("the first 2 trials all failed")


def test_a_bad_breaker_setting_is_refused() -> None:
    with pytest.raises(ValueError, match=r"failures\.max_rate"):
        spec("always:main", failures={"max_rate": 0})


PRINTS = """
import sys


def main(trial):
    for epoch in trial.epochs():
        print(f"hello from epoch {epoch}")
        print(f"a warning on stderr {epoch}", file=sys.stderr)
        if trial.params["lr"] > 0.01:
            raise RuntimeError("lr too big for my code")
        trial.report(epoch, val_loss=1.0 / epoch)
"""


def test_what_a_trial_prints_is_readable_through_the_api_and_the_cli(
    master: Master, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "printing"
    folder.mkdir()
    (folder / "prints.py").write_text(textwrap.dedent(PRINTS))
    monkeypatch.syspath_prepend(str(folder))
    study = master.service.create_study(
        spec("prints:main", stages=[{"trials": 6, "epochs": 2}], early_stopping={"rule": "none"})
    )
    run_worker(master.url, master.store_root, "t1", max_trials=6)
    trials = httpx.get(f"{master.url}/api/v1/studies/{study.id}/trials").json()["data"]
    failed = [t for t in trials if t["state"] == "failed"]
    completed = [t for t in trials if t["state"] == "completed"]
    assert failed, trials
    assert completed, trials
    for trial in completed:
        text = httpx.get(f"{master.url}/api/v1/trials/{trial['id']}/log").text
        assert text.startswith(f"=== trial {trial['number']}, attempt 0, worker t1, ")
        assert "hello from epoch 1\n" in text
        assert "a warning on stderr 2\n" in text
    text = httpx.get(f"{master.url}/api/v1/trials/{failed[0]['id']}/log").text
    assert "Traceback (most recent call last)" in text
    assert "RuntimeError: lr too big for my code" in text
    assert failed[0]["error"].startswith("RuntimeError: lr too big for my code")

    shown = CliRunner().invoke(app, ["logs", str(completed[0]["number"]), "--url", master.url])
    assert shown.exit_code == 0, shown.output
    assert "hello from epoch 2" in shown.output
    missing = CliRunner().invoke(app, ["logs", "999", "--url", master.url])
    assert missing.exit_code == 2
    assert "404: study 1 has no trial 999" in missing.output


def test_gridless_master_on_a_directory_without_a_run_says_so(tmp_path: Path) -> None:
    typo = tmp_path / "gridles-runs" / "digits"
    result = CliRunner().invoke(app, ["master", str(typo)])
    assert result.exit_code == 2
    assert "holds no run (no gridless.db): check the path, or pass --new" in result.output
    assert not typo.exists()  # nothing was created
