"""Ensembles of a `train:` function's models through its predict and evaluate
hooks: a real master, a real worker, the hooks imported by the ensemble job (in this
process: the thread launcher; tests/master/test_ensemble_jobs.py runs them on Ray)."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from gridless.common.metric import Metric
from gridless.common.spec import parse_spec
from gridless.worker.ensembles import TopTrial, evaluate_user_ensembles
from gridless.worker.loop import run_worker
from gridless.worker.trial import load_state, state_writer
from tests.conftest import Master
from tests.jobs import build_ensembles, wait_for_job

# Softmax regression on three Gaussian blobs, trained by gradient descent: a user's
# script in miniature, with the two hooks an ensemble needs.
LOGREG = """
import numpy as np

def data(split):
    rng = np.random.default_rng({"train": 0, "val": 1, "test": 2}[split])
    y = rng.integers(0, 3, 150)
    x = rng.normal(size=(150, 2)) + np.array([[0, 0], [1.4, 0], [0, 1.4]])[y]
    return x, y

def probabilities(w, x):
    scores = x @ w[:2] + w[2]
    e = np.exp(scores - scores.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)

def main(trial):
    x, y = data("train")
    xv, yv = data("val")
    w = np.random.default_rng(trial.seed).normal(scale=0.1, size=(3, 3))
    for epoch in trial.epochs():
        for _ in range(20):
            p = probabilities(w, x)
            p[np.arange(len(y)), y] -= 1
            w[:2] -= trial.params["lr"] * x.T @ p / len(y)
            w[2] -= trial.params["lr"] * p.mean(0)
        acc = float(np.mean(probabilities(w, xv).argmax(1) == yv))
        trial.report(epoch, val_accuracy=acc)
        trial.save({"w": w})

def predict(state, params, split):
    return probabilities(state["w"], data(split)[0])

def evaluate(outputs, split):
    return {"accuracy": float(np.mean(outputs.argmax(1) == data(split)[1]))}

def evaluate_wrong(outputs, split):
    return {"acc": 1.0}
"""


def spec(**extra: Any) -> Any:
    return parse_spec(
        {
            "name": "logreg",
            "train": "logreg_fn:main",
            "space": {"lr": {"log_uniform": [0.01, 3.0]}},
            "stages": [{"trials": 5, "epochs": 3}],
            "early_stopping": {"rule": "none"},
            **extra,
        }
    )


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Master, Any]]:
    folder = tmp_path_factory.mktemp("user")
    (folder / "logreg_fn.py").write_text(textwrap.dedent(LOGREG))
    sys.path.insert(0, str(folder))
    master = Master(tmp_path_factory.mktemp("user-ens") / "run", launcher="thread")
    master.server.start()
    master.service.create_study(spec(predict="logreg_fn:predict", evaluate="logreg_fn:evaluate"))
    master.service.create_study(spec(name="no-hooks"))
    run_worker(master.url, master.store_root, "t1")
    import logreg_fn

    yield master, logreg_fn
    master.server.stop()
    sys.path.remove(str(folder))
    sys.modules.pop("logreg_fn", None)


def test_the_ensembles_average_the_hooks_outputs(finished: tuple[Master, Any]) -> None:
    master, fn = finished
    body = build_ensembles(master.url, 1, {"k": 3})
    with httpx.Client(base_url=master.url + "/api/v1", timeout=120) as api:
        ranked = api.get("/studies/1/trials", params={"limit": 3}).json()["data"]
        checkpoints = api.get("/studies/1/checkpoints", params={"limit": 100}).json()["data"]
    assert (body["metric"], body["maximize"]) == ("accuracy", True)
    # retention keeps each trial's best and latest: the best trial's epochs row has both,
    # or there is none when its latest is its best
    kept = [c for c in checkpoints if c["trial_number"] == ranked[0]["number"]]
    epochs = [("epochs", len(kept))] if len(kept) > 1 else []
    assert [(r["kind"], r["members"]) for r in body["rows"]] == [
        ("single", 1),
        ("single", 1),
        ("single", 1),
        ("top_k", 3),
        *epochs,
    ]
    assert ("keeps one checkpoint" in body["notes"][-1]) is not epochs
    assert body["rows"][0]["name"] == f"best single model (trial {ranked[0]['number']})"
    assert (body["test_examples"], body["val_examples"]) == (150, 150)
    # the top-3 row is the average of the three best trials' best checkpoints, by hand
    best_paths = []
    for trial in ranked:
        own = [c for c in checkpoints if c["trial_number"] == trial["number"]]
        best_paths.append(max(own, key=lambda c: (c["score"], -c["epoch"]))["path"])
    outputs = [fn.predict(load_state(master.store_root / p), {}, "test") for p in best_paths]
    expected = fn.evaluate(np.mean(outputs, axis=0), "test")["accuracy"]
    top = body["rows"][3]
    assert top["test_score"] == pytest.approx(expected)
    assert top["metrics"]["test"]["accuracy"] == top["test_score"]
    assert body["rows"][0]["val_score"] == pytest.approx(ranked[0]["best_score"])
    assert top["test_gain"] == pytest.approx(top["test_score"] - body["rows"][0]["test_score"])


def test_a_study_without_hooks_is_told_which_to_add(finished: tuple[Master, Any]) -> None:
    master, _ = finished
    with httpx.Client(base_url=master.url + "/api/v1", timeout=120) as api:
        refused = api.post("/studies/2/ensembles")
        assert refused.status_code == 422
        assert refused.json() == {
            "detail": "study 2 trains 'logreg_fn:main', a function of yours: to ensemble its "
            "models, give predict(state, params, split) and evaluate(outputs, split) (spec "
            "keys predict: and evaluate:, or this request's predict and evaluate; "
            "docs/user-code.md#ensembles)"
        }
        assert api.get("/studies/2/ensembles").status_code == 404  # nothing was saved
        # the request may name them, for a study whose spec did not
        hooks = {"predict": "logreg_fn:predict", "evaluate": "logreg_fn:evaluate"}
        assert build_ensembles(master.url, 2, {"k": 2, **hooks})["metric"] == "accuracy"


@pytest.mark.parametrize(
    ("hooks", "detail"),
    [
        (
            {"predict": "nowhere:predict", "evaluate": "logreg_fn:evaluate"},
            "predict 'nowhere:predict': cannot import 'nowhere'",
        ),
        (
            {"predict": "logreg_fn:predict", "evaluate": "logreg_fn:evaluate_wrong"},
            "evaluate(split='val') must return a finite 'accuracy' (the study's metric "
            "without its val_ prefix), but returned ['acc']",
        ),
        (
            {"predict": "logreg_fn:main", "evaluate": "logreg_fn:evaluate"},
            "predict(",
        ),
    ],
)
def test_bad_hooks_fail_the_job_saying_why(
    finished: tuple[Master, Any], hooks: dict[str, str], detail: str
) -> None:
    """The job imports and runs the hooks: what was a 422 of the synchronous
    route is the failed job's error, in the same words."""
    master, _ = finished
    with httpx.Client(base_url=master.url + "/api/v1", timeout=120) as api:
        before = api.get("/studies/2/ensembles").json()
        answer = api.post("/studies/2/ensembles", json={"k": 2, **hooks})
        assert answer.status_code == 202
        job = wait_for_job(api, answer.json())
        assert (job["state"], job["report"]) == ("failed", None)
        assert job["error"].startswith(detail)
        assert api.get("/studies/2/ensembles").json() == before


def test_regression_outputs_are_averaged(tmp_path: Path) -> None:
    """(N,) outputs of a user's regression model: the mean of the members, scored by its
    evaluate; a lower-is-better metric keeps its direction."""
    x = np.linspace(-1, 1, 11)
    paths = []
    for i, slope in enumerate((1.0, 3.0)):
        suffix, writer = state_writer({"slope": slope}, {})
        path = tmp_path / f"m{i}.{suffix}"
        with path.open("wb") as handle:
            writer(handle)
        paths.append(path)

    def predict(state: dict[str, Any], params: dict[str, Any], split: str) -> np.ndarray:
        return state["slope"] * x

    def evaluate(outputs: np.ndarray, split: str) -> dict[str, float]:
        return {"rmse": float(np.sqrt(np.mean((outputs - 2 * x) ** 2)))}

    top = [TopTrial(1, {}, paths[0], 1), TopTrial(2, {}, paths[1], 1)]
    report = evaluate_user_ensembles(
        predict=predict, evaluate=evaluate, metric=Metric("val_rmse", "min"), top=top, k=2
    )
    rows = {r.kind: r for r in report.rows}
    assert rows["top_k"].test_score == pytest.approx(0.0)  # (x + 3x) / 2 == 2x
    assert report.rows[0].test_score > 0.5
    assert (report.metric, report.maximize) == ("rmse", False)
    assert "keeps one checkpoint" in report.notes[-1]


def test_a_predict_that_returns_nonsense_is_refused(tmp_path: Path) -> None:
    suffix, writer = state_writer({"w": 1.0}, {})
    path = tmp_path / f"m.{suffix}"
    with path.open("wb") as handle:
        writer(handle)
    with pytest.raises(ValueError, match=r"returned shape \(\)"):
        evaluate_user_ensembles(
            predict=lambda *_: 1.0,
            evaluate=lambda *_: {"accuracy": 1.0},
            metric=Metric("val_accuracy", "max"),
            top=[TopTrial(1, {}, path, 1)],
        )
