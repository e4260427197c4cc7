"""Extending a study: a finished study grows by stages that run, the first
narrowed from its last finished stage; bad requests change nothing."""

from __future__ import annotations

import httpx
from typer.testing import CliRunner

from gridless.common.space import parse_space
from gridless.master.cli import app
from gridless.worker.loop import run_worker
from tests.conftest import Master, tiny_spec


def test_a_finished_study_extended_by_a_stage_runs_it_narrowed_from_the_last(
    master: Master,
) -> None:
    master.service.create_study(
        tiny_spec(
            early_stopping={"rule": "none"},
            stages=[{"trials": 6, "epochs": 1}, {"trials": 4, "epochs": 1}],
        )
    )
    run_worker(master.url, master.store_root, "w1")
    with httpx.Client(base_url=master.url + "/api/v1", timeout=60) as api:
        before = api.get("/studies/1").json()
        assert before["state"] == "completed"
        result = CliRunner().invoke(
            app, ["extend", "1", "--stage", "trials=3,epochs=2", "--url", master.url, "--no-watch"]
        )
        assert result.exit_code == 0, result.output
        assert "study 1 (tiny): running" in result.output
        detail = api.get("/studies/1").json()
        assert [(st["state"], st["trials"], st["epochs"]) for st in detail["stages"]] == [
            ("done", 6, 1),
            ("done", 4, 1),
            ("running", 3, 2),
        ]
        last, new = detail["stages"][1], detail["stages"][2]
        assert last["decisions"]["top_trials"]  # the usual rules ran on the last stage
        decisions = last["decisions"]["decisions"]
        assert decisions
        for decision in decisions:  # the new stage's ranges are the narrowing's decisions
            assert new["space"][decision["param"]] == decision["new"]
        assert detail["total_trials"] == 13
        assert detail["spec"]["stages"][-1] == {"trials": 3, "epochs": 2}
        run_worker(master.url, master.store_root, "w1")
        after = api.get("/studies/1").json()
        trials = api.get("/studies/1/trials", params={"limit": 100}).json()["data"]
    assert after["state"] == "completed"
    assert after["finished_trials"] == 13
    space = parse_space(new["space"])
    third = [t for t in trials if t["stage"] == 3]
    assert len(third) == 3
    for trial in third:
        assert all(space[k].contains(v) for k, v in trial["params"].items())


def test_bad_extensions_are_refused_and_change_nothing(master: Master) -> None:
    master.service.create_study(tiny_spec())
    with httpx.Client(base_url=master.url + "/api/v1", timeout=60) as api:
        assert api.post(
            "/studies/9/stages", json={"stages": [{"trials": 1, "epochs": 1}]}
        ).json() == {"detail": "no study 9"}
        zero = api.post("/studies/1/stages", json={"stages": [{"trials": 0, "epochs": 1}]})
        assert zero.status_code == 422
        assert "stages.0.trials" in zero.json()["detail"]
        assert api.post("/studies/1/stages", json={"stages": []}).status_code == 422
        api.post("/studies/1/stop")
        stopped = api.post("/studies/1/stages", json={"stages": [{"trials": 1, "epochs": 1}]})
        assert stopped.status_code == 409
        assert stopped.json() == {"detail": "study 1 is stopped; resume it before extending it"}
        assert len(api.get("/studies/1").json()["stages"]) == 2
    bad = CliRunner().invoke(app, ["extend", "1", "--stage", "trials=three", "--url", master.url])
    assert bad.exit_code == 2
    assert "expected trials=N,epochs=M" in bad.output


def test_studies_and_stages_side_by_side(master: Master) -> None:
    master.service.create_study(tiny_spec(early_stopping={"rule": "none"}))
    master.service.create_study(tiny_spec(name="other", early_stopping={"rule": "none"}))
    run_worker(master.url, master.store_root, "w1")
    with httpx.Client(base_url=master.url + "/api/v1", timeout=60) as api:
        body = api.get("/studies/compare", params={"ids": "1,2"}).json()["data"]
        trials = api.get("/studies/1/trials", params={"limit": 100}).json()["data"]
        assert [st["name"] for st in body] == ["tiny", "other"]
        first = body[0]["stages"][0]
        scores = sorted(t["best_score"] for t in trials if t["stage"] == 1 and t["best_score"])
        assert first["scored"] == len(scores)
        assert (first["scores"]["min"], first["scores"]["max"], first["best"]) == (
            scores[0],
            scores[-1],
            scores[-1],
        )
        assert first["scores"]["min"] <= first["scores"]["median"] <= first["scores"]["max"]
        assert api.get("/studies/compare", params={"ids": "1,9"}).json() == {
            "detail": "no study 9"
        }
        assert api.get("/studies/compare", params={"ids": "one"}).status_code == 422
        assert api.get("/studies/compare", params={"ids": ",".join(["1"] * 11)}).status_code == 422


def test_trials_added_to_the_running_stage_run_in_it(master: Master) -> None:
    master.service.create_study(tiny_spec(early_stopping={"rule": "none"}))
    with httpx.Client(base_url=master.url + "/api/v1", timeout=60) as api:
        answer = api.post("/studies/1/stages", json={"add_trials": 2})
        assert answer.status_code == 200, answer.text
        assert [st["trials"] for st in answer.json()["stages"]] == [6, 2]
        assert api.post("/studies/1/stages", json={}).status_code == 422
        run_worker(master.url, master.store_root, "w1")
        trials = api.get("/studies/1/trials", params={"limit": 100}).json()["data"]
        assert sorted(t["stage"] for t in trials) == [1] * 6 + [2] * 2
        done = api.post("/studies/1/stages", json={"add_trials": 1})
        assert done.json() == {
            "detail": "study 1 has no running stage to add trials to: append a stage instead"
        }


def test_extending_without_workers_says_so_and_how_to_add_them(master: Master) -> None:
    master.service.create_study(tiny_spec())  # no worker ever claimed from this master
    result = CliRunner().invoke(
        app, ["extend", "1", "--trials", "2", "--url", master.url, "--no-watch"]
    )
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())
    assert "no workers are connected to this master, so the study waits" in flat
    assert f"gridless workers add N --url {master.url}" in flat
