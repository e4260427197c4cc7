"""Warm starts (issue 18): stage 1 opens with the old study's last ranges; bad warm
starts are a 422 through the real API; the benchmark's comparison runs."""

from __future__ import annotations

import httpx
import pytest
from typer.testing import CliRunner

from gridless.master.cli import app
from gridless.worker.loop import run_worker
from tests.conftest import TINY_SPEC, Master


def test_stage_one_of_a_warm_start_opens_with_the_old_ranges(master: Master) -> None:
    old = {**TINY_SPEC, "name": "old", "early_stopping": {"rule": "none"}}
    with httpx.Client(base_url=master.url + "/api/v1", timeout=60) as api:
        assert api.post("/studies", json=old).status_code == 201
        run_worker(master.url, master.store_root, "w1")
        last = api.get("/studies/1").json()["stages"][-1]["space"]
        warm = {**TINY_SPEC, "name": "warm", "sampler": "tpe", "warm_start": {"study": 1}}
        assert api.post("/studies", json=warm).status_code == 201
        detail = api.get("/studies/2").json()
        assert detail["stages"][0]["space"] == last != TINY_SPEC["space"]
        own = {**warm, "name": "own", "warm_start": {"study": 1, "ranges": "spec"}}
        assert api.post("/studies", json=own).status_code == 201
        assert api.get("/studies/3").json()["stages"][0]["space"] == TINY_SPEC["space"]
    shown = CliRunner().invoke(app, ["status", "2", "--url", master.url], env={"COLUMNS": "200"})
    assert "warm-started from study 1 (its ranges for stage 1; its trials inform TPE" in (
        shown.output
    )


@pytest.mark.parametrize(
    ("warm", "changes", "detail"),
    [
        ({"study": 9}, {}, "warm_start.study: no study 9 in this database"),
        (
            {"study": 1},
            {"model": "torch.mlp"},
            "warm_start.study: study 1 trains numpy.mlp, this spec torch.mlp: a warm start "
            "needs the same model",
        ),
        (
            {"study": 1},
            {"metric": "val_loss"},
            "warm_start.study: study 1 optimized val_accuracy, this spec val_loss: their "
            "scores do not compare",
        ),
        ({"study": 0}, {}, "warm_start.study: Input should be greater than or equal to 1"),
    ],
)
def test_bad_warm_starts_are_a_422(
    master: Master, warm: dict[str, int], changes: dict[str, str], detail: str
) -> None:
    with httpx.Client(base_url=master.url + "/api/v1", timeout=60) as api:
        assert api.post("/studies", json={**TINY_SPEC, "name": "old"}).status_code == 201
        answer = api.post(
            "/studies", json={**TINY_SPEC, **changes, "name": "new", "warm_start": warm}
        )
        assert (answer.status_code, answer.json()) == (422, {"detail": detail})
        assert api.get("/studies").json()["count"] == 1


def test_the_warm_start_benchmark_runs() -> None:
    from benchmarks.warm_start import compare

    (result,) = compare(seeds=1, trials=3)
    assert 0.0 <= result["cold"] <= 1.0
    assert 0.0 <= result["warm"] <= 1.0
