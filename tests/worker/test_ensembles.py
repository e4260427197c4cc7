"""Ensembles: probability averaging, every kind, and a test split selection never sees."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from sqlalchemy import select

from gridless.common.db import CheckpointRow, TrialRow, session_scope
from gridless.worker import ensembles
from gridless.worker.data import load_dataset
from gridless.worker.ensembles import TopTrial, accuracy, average_probabilities, evaluate_ensembles
from gridless.worker.loop import run_worker
from tests.conftest import Master, tiny_spec
from tests.jobs import build_ensembles


def test_average_of_probabilities_not_a_majority_vote() -> None:
    # two members lean weakly to class 0, one is sure of class 1: the average says 1
    a = np.array([[0.55, 0.45]])
    b = np.array([[0.55, 0.45]])
    c = np.array([[0.05, 0.95]])
    assert average_probabilities([a, b, c]) == pytest.approx(np.array([[0.05 + 1.1, 1.85]]) / 3)
    assert accuracy(average_probabilities([a, b, c]), np.array([1])) == 1.0
    assert accuracy(a, np.array([1])) == 0.0


def test_average_refuses_no_members_and_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="at least one member"):
        average_probabilities([])
    with pytest.raises(ValueError, match="members disagree on shape"):
        average_probabilities([np.zeros((2, 3)), np.zeros((3, 3))])


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Master, list[TopTrial]]]:
    master = Master(tmp_path_factory.mktemp("ens") / "run", launcher="thread")
    master.server.start()
    master.service.create_study(
        tiny_spec(
            early_stopping={"rule": "none"},
            stages=[{"trials": 6, "epochs": 2}, {"trials": 3, "epochs": 3}],
        )
    )
    run_worker(master.url, master.store_root, "t1")
    _, chosen = master.service.ensemble_inputs(1, 3)
    top = [
        TopTrial(t.number, t.params or {}, master.store_root / path, t.epochs)
        for t, path in chosen
    ]
    yield master, top
    master.server.stop()


def test_every_kind_is_built_and_measured(finished: tuple[Master, list[TopTrial]]) -> None:
    _, top = finished
    report = evaluate_ensembles(model="numpy.mlp", dataset="digits", fixed={}, top=top, k=3)
    kinds = [(r.kind, r.members) for r in report.rows]
    assert kinds == [
        ("single", 1),
        ("single", 1),
        ("single", 1),
        ("top_k", 3),
        ("seeds", 3),
        ("epochs", 3),
        ("ema", 1),
        ("single", 1),
    ]
    assert report.rows[0].name == f"best single model (trial {top[0].number})"
    assert (report.test_examples, report.val_examples) == (270, 270)
    best = report.rows[0]
    for row in report.rows:
        assert 0.5 < row.val_score <= 1.0
        assert row.test_gain == pytest.approx(row.test_score - best.test_score)


def test_the_best_single_model_is_its_checkpoint(finished: tuple[Master, list[TopTrial]]) -> None:
    master, top = finished
    report = evaluate_ensembles(
        model="numpy.mlp", dataset="digits", fixed={}, top=top, k=1, retrain=False
    )
    with session_scope(master.service.sessions) as s:
        trial = s.scalar(select(TrialRow).where(TrialRow.number == top[0].number))
        score = s.scalar(
            select(CheckpointRow.score).where(
                CheckpointRow.path == str(top[0].checkpoint.relative_to(master.store_root))
            )
        )
    assert report.rows[0].val_score == pytest.approx(score)
    assert score == pytest.approx(trial.best_score)


def test_the_test_split_is_unseen_by_selection(
    finished: tuple[Master, list[TopTrial]], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, top = finished
    honest = evaluate_ensembles(model="numpy.mlp", dataset="digits", fixed={}, top=top, k=3)
    data = load_dataset("digits")
    shuffled = dataclasses.replace(
        data, y_test=np.random.default_rng(0).permutation(data.y_test)[::-1].copy()
    )
    monkeypatch.setattr(ensembles, "load_dataset", lambda _spec: shuffled)
    scrambled = evaluate_ensembles(model="numpy.mlp", dataset="digits", fixed={}, top=top, k=3)
    # the same members, the same validation numbers: nothing was chosen with the test split
    assert [(r.kind, r.name, r.val_score) for r in scrambled.rows] == [
        (r.kind, r.name, r.val_score) for r in honest.rows
    ]
    assert all(
        s.test_score < 0.3 < h.test_score for s, h in zip(scrambled.rows, honest.rows, strict=True)
    )


def test_custom_models_and_empty_studies_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no scored trial with a checkpoint"):
        evaluate_ensembles(model="numpy.mlp", dataset="digits", fixed={}, top=[])
    with pytest.raises(ValueError, match=r"need a built-in model"):
        evaluate_ensembles(
            model="x:y", dataset="digits", fixed={}, top=[TopTrial(0, {}, tmp_path / "x", 1)]
        )


def test_ensemble_routes(finished: tuple[Master, list[TopTrial]]) -> None:
    master, top = finished
    with httpx.Client(base_url=master.url + "/api/v1", timeout=120) as api:
        assert api.get("/studies/1/ensembles").json() == {
            "detail": "no ensembles built for study 1; POST to build them"
        }
        assert api.post("/studies/1/ensembles", json={"k": 0}).status_code == 422
        assert api.post("/studies/1/ensembles", json={"k": 2, "bogus": 1}).status_code == 422
        built = build_ensembles(master.url, 1, {"k": 2, "retrain": False})
        assert [r["kind"] for r in built["rows"]] == ["single", "single", "top_k"]
        # the job's report is what the synchronous call on the same members gives
        direct = evaluate_ensembles(
            model="numpy.mlp", dataset="digits", fixed={}, top=top, k=2, retrain=False
        )
        assert built["rows"] == direct.to_json()["rows"]
        assert api.get("/studies/1/ensembles").json()["rows"] == built["rows"]
        assert api.get("/studies/9/ensembles").status_code == 404
        api.post("/studies", json={**tiny_spec(name="running").model_dump(mode="json")})
        busy = api.post("/studies/2/ensembles")
        assert (busy.status_code, busy.json()) == (
            409,
            {"detail": "study 2 is running; ensembles need a completed study"},
        )
