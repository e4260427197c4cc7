"""What the CLI prints of a real study (a master over HTTP, trials of a user function run
by the worker loop in this process): piped output keeps every digit, failed trials say
why, a `train:` study's spec carries no built-in defaults."""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from gridless.common.spec import parse_spec
from gridless.master.cli import app, follow, render
from gridless.master.cli.client import ApiClient
from gridless.worker.loop import run_worker
from tests.conftest import Master

WIDE = """
def main(trial):
    if trial.number == 1:
        raise RuntimeError("out of memory on the second trial")
    score = sum(float(v) for v in trial.params.values()) / 100
    trial.report(1, val_loss=1.0, val_score=0.123456 + score)
"""


@pytest.fixture
def wide_study(master: Master, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    folder = tmp_path / "user"
    folder.mkdir()
    (folder / "wide_user.py").write_text(textwrap.dedent(WIDE))
    monkeypatch.syspath_prepend(str(folder))
    space = {f"parameter_{i}": {"uniform": [1000.0, 2000.0]} for i in range(10)}
    spec = parse_spec(
        {
            "name": "wide",
            "train": "wide_user:main",
            "metric": {"name": "val_score", "mode": "max"},
            "space": space,
            "stages": [{"trials": 3, "epochs": 1}],
        }
    )
    study = master.service.create_study(spec)
    run_worker(master.url, master.store_root, "t1", max_trials=3)
    return int(study.id)


def piped(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """stdout as a pipe sees it: not a terminal, 80 columns."""
    out = io.StringIO()
    monkeypatch.setattr(render, "console", Console(file=out, width=80))
    return out


def test_a_piped_ranked_table_truncates_no_number_and_shows_errors(
    master: Master, wide_study: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = piped(monkeypatch)
    with ApiClient(master.url) as client:
        study = client.study(wide_study)
        page = client.trials(wide_study, limit=10)
        render.show(render.trials_table(study, page))
    text = out.getvalue()
    assert "…" not in text
    for trial in page.data:
        for value in (trial.params or {}).values():
            assert f"{value:.3g}" in text
        if trial.best_score is not None:
            assert f"{trial.best_score:.4f}" in text
    assert "┃ error" in text
    assert "RuntimeError: out of memory on the second trial" in text


def test_a_train_study_shows_no_builtin_model_or_dataset(master: Master, wide_study: int) -> None:
    with ApiClient(master.url) as client:
        spec = client.study(wide_study).spec
    assert spec["train"] == "wide_user:main"
    assert "model" not in spec
    assert "dataset" not in spec


WRONG_METRIC = """
def main(trial):
    for epoch in trial.epochs():
        trial.report(epoch, accuracy=0.5)
"""


def test_a_pause_for_a_wrong_metric_name_advises_a_new_run_not_resume(
    master: Master, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "user"
    folder.mkdir()
    (folder / "wrong_user.py").write_text(textwrap.dedent(WRONG_METRIC))
    monkeypatch.syspath_prepend(str(folder))
    spec = parse_spec(
        {
            "name": "wrong",
            "train": "wrong_user:main",
            "metric": {"name": "val_f1", "mode": "max"},
            "space": {"lr": {"log_uniform": [1e-4, 0.1]}},
            "stages": [{"trials": 6, "epochs": 1}],
        }
    )
    study_id = int(master.service.create_study(spec).id)
    run_worker(master.url, master.store_root, "t1", max_trials=5)  # the breaker: first 5
    with ApiClient(master.url) as client:
        study = client.study(study_id)
        failed = client.trials(study_id, limit=5, state="failed")
    assert study.state_reason is not None  # the breaker paused it
    lines = render.failure_lines(
        study, failed, resume="gridless resume RUN", new_run="gridless run SPEC"
    )
    assert "the fix is in the spec (its metric): gridless run SPEC" in lines[0]
    assert "gridless resume RUN" not in lines[0]


CHOICE = """
def main(trial):
    for epoch in trial.epochs():
        trial.report(epoch, val_loss=1.0 / epoch, val_f1=0.5)
"""


def test_check_says_which_point_of_the_space_it_runs(tmp_path: Path) -> None:
    (tmp_path / "choice_user.py").write_text(textwrap.dedent(CHOICE))
    (tmp_path / "study.yaml").write_text(
        textwrap.dedent(
            """\
            name: choice
            train: choice_user:main
            metric: {name: val_f1, mode: max}
            space:
              lr: {log_uniform: [1.0e-4, 1.0e-2]}
              optimizer: {choice: [adamw, sgd]}
            stages:
              - {trials: 2, epochs: 2}
            """
        )
    )
    result = CliRunner().invoke(app, ["check", str(tmp_path / "study.yaml")])
    flat = " ".join(result.output.split())
    assert "each range's middle, each choice's first option): lr=0.001, optimizer=adamw" in flat


def test_help_wraps_at_the_terminal_not_mid_sentence() -> None:
    shown = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"}, terminal_width=200)
    assert shown.exit_code == 0
    line = next(line for line in shown.output.splitlines() if "│ run " in line)
    assert "progress bar, ranked table. With --resume, continue the newest run" in line


ODD_SAVES = """
def main(trial):
    for epoch in trial.epochs():
        trial.report(epoch, val_loss=1.0 / epoch, val_f1=0.3 * epoch)
        if epoch % 2:
            trial.save({"epoch": epoch})
"""


def test_the_result_notes_a_best_epoch_without_its_checkpoint(
    master: Master, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "user"
    folder.mkdir()
    (folder / "odd_user.py").write_text(textwrap.dedent(ODD_SAVES))
    monkeypatch.syspath_prepend(str(folder))
    spec = parse_spec(
        {
            "name": "odd",
            "train": "odd_user:main",
            "metric": {"name": "val_f1", "mode": "max"},
            "space": {"lr": {"log_uniform": [1e-4, 0.1]}},
            "stages": [{"trials": 1, "epochs": 4}],
        }
    )
    study_id = int(master.service.create_study(spec).id)
    run_worker(master.url, master.store_root, "t1", max_trials=1)
    out = piped(monkeypatch)
    monkeypatch.setattr(follow, "console", render.console)
    with ApiClient(master.url) as client:
        follow.show_result(client, study_id, top=5, columns=[])
    flat = " ".join(out.getvalue().split())
    assert "best checkpoint (trial 0, epoch 3)" in flat
    assert (
        "note: trial 0's best epoch 4 has no checkpoint: pass checkpoint= to trial.report" in flat
    )


CHOOSER = """
def main(trial):
    score = 0.9 if trial.params["act"] == "relu" else 0.1
    trial.report(1, val_loss=1.0 - score, val_score=score + trial.params["lr"])
"""


def test_status_prints_a_narrowed_choice_with_its_options(
    master: Master, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "user"
    folder.mkdir()
    (folder / "chooser_user.py").write_text(textwrap.dedent(CHOOSER))
    monkeypatch.syspath_prepend(str(folder))
    spec = parse_spec(
        {
            "name": "chooser",
            "train": "chooser_user:main",
            "metric": {"name": "val_score", "mode": "max"},
            "sampler": "random",
            "space": {"lr": {"uniform": [0.0, 0.01]}, "act": {"choice": ["relu", "tanh"]}},
            "stages": [{"trials": 8, "epochs": 1}, {"trials": 1, "epochs": 1}],
        }
    )
    study_id = int(master.service.create_study(spec).id)
    run_worker(master.url, master.store_root, "t1", max_trials=9)
    out = piped(monkeypatch)
    with ApiClient(master.url) as client:
        detail = client.study(study_id)
        ranked = client.trials(study_id, limit=10)
        failed = client.trials(study_id, state="failed", limit=5)
        render.show(render.status_view(detail, ranked, failed))
    text = " ".join(out.getvalue().split())
    # rich would read "[relu, tanh]" as a markup tag and print nothing in its place
    assert "stage 1 -> 2: act [relu, tanh] -> [relu] (kept the options" in text
