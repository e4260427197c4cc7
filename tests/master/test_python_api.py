"""`gridless.connect` and `Study` over a real master (HTTP, SQLite) whose workers run in
this process (ThreadLauncher): the list and frame of trials, the best trial and its
checkpoint, `wait`, lookup by name and id, and the errors a user meets. The same API on
real Ray is tests/e2e/test_python_api_e2e.py."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import gridless
from gridless.common.checkpoint_files import read_npz
from gridless.common.errors import GridlessError
from gridless.master.cli.client import ApiClient
from tests.conftest import TINY_SPEC, Master


@pytest.fixture
def finished(tmp_path: Path) -> Iterator[tuple[Master, gridless.Study]]:
    """The tiny study run to its end by two in-process workers, as a `Study`."""
    m = Master(tmp_path / "run", launcher="thread")
    m.server.start()
    try:
        with ApiClient(m.url) as api:
            api.create_study(TINY_SPEC)
            api.launch_workers(2)
        with gridless.connect(m.url) as client:
            study = client.study("tiny").wait(timeout=300)
            yield m, study
            study.close()
    finally:
        m.app.state.workers.shutdown()
        m.server.stop()


def test_a_finished_study_lists_its_trials_and_best(
    finished: tuple[Master, gridless.Study],
) -> None:
    m, study = finished
    assert study.state == "completed"
    assert study.is_over()
    trials = study.trials()
    assert [t.number for t in trials] == [0, 1, 2, 3, 4, 5]
    assert {t.stage for t in trials} == {1, 2}
    assert all(set(t.params) == {"learning_rate", "reg", "hidden"} for t in trials)
    assert all(t.metrics["val_accuracy"] == t.score for t in trials)
    assert study.trials(state="failed") == []
    best = study.best
    assert best is not None
    top = max(trials, key=lambda t: t.score or -1.0)
    assert (best.trial, best.params, best.score) == (top.number, top.params, top.score)
    assert best.epoch == top.best_epoch
    assert best.checkpoint is not None
    assert best.checkpoint.startswith(f"tiny/{top.number:06d}/")
    # load_best: the checkpoint the master serves, read without pickle
    arrays, _ = read_npz(Path(m.store_root) / best.checkpoint)
    loaded = gridless.load_best(study)
    assert set(loaded) == set(arrays)
    for key, value in arrays.items():
        assert (loaded[key] == value).all()


def test_trials_frame_has_a_row_a_trial_with_param_and_metric_columns(
    finished: tuple[Master, gridless.Study],
) -> None:
    import pandas  # optional for users, in the dev extra

    _, study = finished
    frame = study.trials_frame()
    assert isinstance(frame, pandas.DataFrame)
    assert list(frame.index) == [0, 1, 2, 3, 4, 5]
    for column in ("state", "stage", "score", "params.learning_rate", "metrics.val_accuracy"):
        assert column in frame.columns
    best = study.best
    assert best is not None
    assert frame["score"].max() == best.score
    assert frame.loc[best.trial, "params.hidden"] == best.params["hidden"]


def test_trials_frame_without_pandas_says_how_to_get_it(
    finished: tuple[Master, gridless.Study], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, study = finished
    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` raises ImportError
    with pytest.raises(ImportError, match=r"needs pandas: pip install pandas"):
        study.trials_frame()
    assert len(study.trials()) == 6  # the list needs nothing


def test_studies_are_found_by_id_and_name_and_a_wrong_name_lists_them(
    finished: tuple[Master, gridless.Study],
) -> None:
    m, study = finished
    with gridless.connect(m.url + "/") as client:
        assert client.studies() == ["tiny"]
        by_id = client.study(study.id)
        newest = client.study()
        assert (by_id.name, newest.id, by_id.url) == ("tiny", study.id, m.url)
        with pytest.raises(GridlessError, match=r"has no a study 'tny' \(its studies: tiny\)"):
            client.study("tny")
        for s in (by_id, newest):
            s.close()


def test_a_study_without_a_score_has_no_best_and_load_best_says_why(tmp_path: Path) -> None:
    m = Master(tmp_path / "run")  # no launcher: nothing runs
    m.server.start()
    try:
        with ApiClient(m.url) as api:
            api.create_study(TINY_SPEC)
        with gridless.connect(m.url) as client:
            study = client.study("tiny")
            assert study.best is None
            assert study.state == "running"
            with pytest.raises(GridlessError, match=r"study 'tiny' has no scored trial yet"):
                gridless.load_best(study)
            with pytest.raises(TimeoutError, match=r"study 'tiny' still running"):
                study.wait(timeout=0.2)
            assert study.stop().state == "stopped"
            study.close()
    finally:
        m.server.stop()


def test_connect_to_nothing_is_one_gridless_error(tmp_path: Path) -> None:
    from tests.net import free_port

    with (
        gridless.connect(f"http://127.0.0.1:{free_port()}") as client,
        pytest.raises(GridlessError, match=r"cannot reach the master"),
    ):
        client.study("tiny")


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({**TINY_SPEC, "metric": 3}, r"metric"),
        ("no-such-spec.yaml", r"no-such-spec.yaml: no such spec file"),
        (["not", "a", "spec"], r"spec: a dict, a StudySpec or a YAML path, not list"),
    ],
)
def test_run_refuses_a_bad_spec_before_it_starts_anything(
    spec: object, match: str, tmp_path: Path
) -> None:
    with pytest.raises(GridlessError, match=match):
        gridless.run(spec, run_dir=tmp_path / "runs")  # type: ignore[arg-type]
    assert not (tmp_path / "runs").exists()


def test_run_refuses_a_worker_count_out_of_range(tmp_path: Path) -> None:
    with pytest.raises(GridlessError, match=r"workers: None or a number from 1 to 256, but got 0"):
        gridless.run(TINY_SPEC, workers=0, run_dir=tmp_path / "runs")
