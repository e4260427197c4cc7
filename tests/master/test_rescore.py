"""Re-scoring the top of a stage on more seeds (`rescore:`), through a real master
over HTTP and the real worker loop in this process (no Ray; the Ray run is
tests/e2e/test_rescore_e2e.py). The function's score is quality(x) + noise(seed): one
lucky seed lifts a worse configuration to the top of its stage."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from gridless.common.errors import SpecError
from gridless.common.spec import parse_spec
from gridless.master.cli import app
from gridless.worker.loop import run_worker
from tests.conftest import TINY_SPEC, Master

NOISY = """
import math


def quality(x):
    return 0.42 + 0.4 * x  # x = 0.2: 0.5, x = 0.3: 0.54, x = 0.7: 0.7


def noise(trial):
    # trial 0's seed is lucky; every other seed adds a little deterministic noise
    if trial.number == 0:
        return 0.3
    return 0.005 * math.sin(trial.seed)


def main(trial):
    x = trial.params["x"]
    for epoch in trial.epochs():
        if trial.params.get("fragile") and trial.number != 0:
            trial.report(epoch, val_score=float("nan"))  # diverges on other seeds
        trial.report(epoch, val_score=(quality(x) + noise(trial)) * epoch / trial.max_epochs)
        trial.save({"x": x})
"""


@pytest.fixture
def noisy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    folder = tmp_path / "user"
    folder.mkdir()
    (folder / "noisy.py").write_text(textwrap.dedent(NOISY))
    monkeypatch.syspath_prepend(str(folder))
    return "noisy:main"


def noisy_spec(train: str, **changes: Any) -> dict[str, Any]:
    return {
        "name": "noisy",
        "train": train,
        "metric": {"name": "val_score", "mode": "max"},
        "seed": 5,
        "space": {"x": {"uniform": [0.0, 1.0]}},
        "stages": [{"trials": 3, "epochs": 1}],
        "enqueue": [{"x": 0.2}, {"x": 0.7}, {"x": 0.3}],
        "early_stopping": {"rule": "none"},
        **changes,
    }


def run(master: Master, spec: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    with httpx.Client(base_url=master.url + "/api/v1", timeout=60) as api:
        created = api.post("/studies", json=spec)
        assert created.status_code == 201, created.text
        run_worker(master.url, master.store_root, "w1")
        detail = api.get("/studies/1").json()
        ranked = api.get("/studies/1/trials", params={"limit": 100}).json()["data"]
    assert detail["state"] == "completed"
    return detail, ranked


def test_rescoring_changes_the_selection_a_lucky_seed_made(master: Master, noisy: str) -> None:
    detail, ranked = run(master, noisy_spec(noisy, rescore={"top": 2, "seeds": 3}))
    by_number = {t["number"]: t for t in ranked}
    # one seed each: the lucky trial 0 (x = 0.2, quality 0.5) has the best score...
    assert max(ranked, key=lambda t: t["best_score"])["number"] == 0
    # ...but its re-runs score 0.5 and those of trial 1 (x = 0.7) 0.7: the mean selects 1
    assert ranked[0]["number"] == 1
    assert ranked[0]["params"] == {"x": 0.7}
    assert ranked[0]["rank"] == 1
    reruns = [t for t in ranked if t["origin"] == "rescore"]
    assert sorted(t["number"] for t in reruns) == [3, 4, 5, 6]
    for rerun in reruns:
        parent = next(t for t in ranked if t["id"] == rerun["parent_id"])
        assert parent["number"] in (0, 1)
        assert rerun["params"] == parent["params"]
        assert rerun["state"] == "completed"
        assert rerun["selection_score"] == parent["selection_score"]
    mean_of = {
        n: (
            by_number[n]["best_score"]
            + sum(r["best_score"] for r in reruns if r["parent_id"] == by_number[n]["id"])
        )
        / 3
        for n in (0, 1)
    }
    assert by_number[1]["selection_score"] == pytest.approx(mean_of[1])
    assert by_number[0]["selection_score"] == pytest.approx(mean_of[0])
    assert mean_of[0] == pytest.approx(0.6, abs=0.02)
    assert mean_of[1] == pytest.approx(0.7, abs=0.02)
    assert by_number[2]["selection_score"] == by_number[2]["best_score"]  # not re-scored
    assert detail["best_score"] == pytest.approx(mean_of[1])
    assert (detail["finished_trials"], detail["total_trials"]) == (7, 7)
    (stage,) = detail["stages"]
    record = stage["decisions"]["rescore"]
    assert record["top"] == [0, 1]
    assert [c["trial"] for c in record["configurations"]] == [0, 1]
    assert record["configurations"][1]["runs"][0] == 1
    assert record["configurations"][1]["mean"] == pytest.approx(mean_of[1])
    shown = CliRunner().invoke(app, ["status", "1", "--url", master.url], env={"COLUMNS": "220"})
    assert shown.exit_code == 0, shown.output
    first = next(line for line in shown.output.splitlines() if "(enqueued)" in line)
    assert re.match(r"^\W+1\W+1\W", first), first  # rank 1 is trial 1, with its mean
    assert f"(mean {mean_of[1]:.4f})" in first, shown.output
    assert "(rescore)" in shown.output


def test_without_rescore_the_lucky_seed_wins(master: Master, noisy: str) -> None:
    detail, ranked = run(master, noisy_spec(noisy))
    assert ranked[0]["number"] == 0  # the worse configuration, by one lucky seed
    assert len(ranked) == 3
    assert "rescore" not in detail["stages"][0]["decisions"]


def test_a_seed_that_diverges_counts_as_the_stages_worst_score(master: Master, noisy: str) -> None:
    spec = noisy_spec(noisy, rescore={"top": 1, "seeds": 3})
    spec["fixed"] = {"fragile": True}  # every seed but trial 0's diverges
    detail, ranked = run(master, spec)
    record = detail["stages"][0]["decisions"]["rescore"]
    (config,) = record["configurations"]
    lucky = next(t for t in ranked if t["number"] == 0)
    diverged = [t for t in ranked if t["origin"] == "rescore"]
    assert {t["state"] for t in diverged} == {"diverged"}
    worst = min(t["best_score"] for t in ranked if t["best_score"] is not None)
    assert config["scores"] == [lucky["best_score"], worst, worst]
    assert lucky["selection_score"] == pytest.approx((lucky["best_score"] + 2 * worst) / 3)


def test_re_runs_are_not_stopped_early_and_do_not_narrow_twice(master: Master, noisy: str) -> None:
    spec = noisy_spec(
        noisy,
        stages=[{"trials": 4, "epochs": 4}, {"trials": 2, "epochs": 4}],
        enqueue=[{"x": 0.2}, {"x": 0.7}, {"x": 0.3}, {"x": 0.6}],
        # ASHA at rungs 1 and 2 would stop the unlucky re-runs of trial 0 (they trail
        # trials 1 and 3 there): re-runs are exempt
        early_stopping={"rule": "asha", "reduction_factor": 2},
        rescore={"top": 1, "seeds": 2, "after": "every_stage"},
    )
    detail, ranked = run(master, spec)
    stage1, stage2 = detail["stages"]
    reruns = [t for t in ranked if t["origin"] == "rescore"]
    assert len(reruns) == 2  # one a stage
    assert {(t["state"], t["last_epoch"]) for t in reruns} == {("completed", 4)}
    numbers1 = set(stage1["decisions"]["top_trials"])
    assert numbers1
    assert not numbers1 & {t["number"] for t in reruns}
    assert stage1["decisions"]["rescore"]["top"] == [0]
    assert stage2["decisions"]["rescore"]["top"]  # the last stage was re-scored too
    assert (stage1["trials"], stage2["trials"]) == (5, 3)


def test_last_stage_rescores_only_the_last(master: Master, noisy: str) -> None:
    spec = noisy_spec(
        noisy,
        stages=[{"trials": 3, "epochs": 1}, {"trials": 2, "epochs": 1}],
        rescore={"top": 1, "seeds": 2, "after": "last_stage"},
    )
    detail, ranked = run(master, spec)
    stage1, stage2 = detail["stages"]
    assert "rescore" not in stage1["decisions"]
    assert stage2["decisions"]["rescore"]["top"]
    assert [t["stage"] for t in ranked if t["origin"] == "rescore"] == [2]


@pytest.mark.parametrize(
    ("rescore", "message"),
    [
        ({"top": 0}, "rescore.top: Input should be greater than or equal to 1"),
        ({"seeds": 1}, "rescore.seeds: Input should be greater than or equal to 2"),
        ({"after": "never"}, "rescore.after: Input should be 'every_stage' or 'last_stage'"),
        (
            {"tops": 3},
            "rescore.tops: unknown key; did you mean 'top'? (the keys here: after, seeds, top)",
        ),
    ],
)
def test_bad_rescore_settings_name_the_key(rescore: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec({**TINY_SPEC, "rescore": rescore})
    assert str(caught.value) == message


def test_the_selection_score_follows_the_best_until_re_scoring_sets_a_mean(
    tmp_path: Path,
) -> None:
    from sqlalchemy import insert, select

    from gridless.common.db import (
        StageRow,
        StudyRow,
        TrialRow,
        make_engine,
        make_session_factory,
        session_scope,
    )

    engine = make_engine(f"sqlite:///{tmp_path / 'g.db'}")
    sessions = make_session_factory(engine)
    with session_scope(sessions) as s:
        study = StudyRow(name="a", spec={}, metric="m", maximize=True, seed=0, state="running")
        s.add(study)
        s.flush()
        stage = StageRow(
            study_id=study.id, index=0, trials=1, epochs=1, space={}, state="running", decisions={}
        )
        s.add(stage)
        s.flush()
        common = {"study_id": study.id, "stage_id": stage.id, "state": "completed", "epochs": 1}
        bulk = [{**common, "number": i, "best_score": 0.1 * i if i else None} for i in range(3)]
        s.execute(insert(TrialRow), bulk)  # a bulk insert (benchmarks/master_load.py)
        trial = TrialRow(**common, number=9, warnings=[])
        s.add(trial)
        s.flush()
        trial.best_score = 0.5
        trial.best_score = 0.7  # follows the best
        trial.selection_score = 0.3  # re-scored: the mean over seeds
        trial.best_score = 0.9  # no longer follows
    with session_scope(sessions) as s:
        got = [(t.number, t.best_score, t.selection_score) for t in s.scalars(select(TrialRow))]
    engine.dispose()
    assert got == [(0, None, None), (1, 0.1, 0.1), (2, 0.2, 0.2), (9, 0.9, 0.3)]
