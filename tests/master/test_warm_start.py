"""Warm starts: stage 1 opens with the old study's last ranges; bad warm
starts are a 422 through the real API; the benchmark's comparison runs."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from gridless.common.errors import GridlessError
from gridless.master.cli import app
from gridless.master.cli.checks import validate
from gridless.master.cli.render import warm_line
from gridless.worker.loop import run_worker
from tests.conftest import TINY_SPEC, Master, tiny_spec


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


def test_a_warm_start_from_another_run_directory(master: Master, tmp_path: Path) -> None:
    """`warm_start: {run: PATH}`: the CLI reads the old run's study into a snapshot (the
    master never opens a path a request names); its last ranges open stage 1."""
    old = Master(tmp_path / "old-run")
    old.server.start()
    try:
        old.service.create_study(tiny_spec(name="old", early_stopping={"rule": "none"}))
        run_worker(old.url, old.store_root, "w1")
        last = old.service.stages(1)[-1].space
        scored = old.service.list_trials(1, limit=100, offset=0)[1]
    finally:
        old.server.stop()
    spec_file = tmp_path / "warm.yaml"
    spec_file.write_text(
        yaml.safe_dump({**TINY_SPEC, "name": "warm", "sampler": "tpe",
                        "warm_start": {"run": "old-run"}})
    )  # fmt: skip
    spec = validate(spec_file)  # the path is relative to the spec's folder
    assert spec.warm_start is not None
    assert spec.warm_start.snapshot is not None
    assert spec.warm_start.snapshot.ranges == last
    assert 0 < len(spec.warm_start.snapshot.trials) <= scored
    with httpx.Client(base_url=master.url + "/api/v1", timeout=60) as api:
        sent = api.post("/studies", json=spec.model_dump(mode="json", exclude_none=True))
        assert sent.status_code == 201, sent.text
        shown = api.get("/studies/1").json()
        assert shown["stages"][0]["space"] == last
        # the status line names the old study and its run, not "study None"
        line = warm_line(shown["spec"]["warm_start"])
        assert line.startswith(f"warm-started from study old of run {tmp_path / 'old-run'} ")
        assert "None" not in line
        raw = api.post(
            "/studies", json={**TINY_SPEC, "name": "raw", "warm_start": {"run": "/etc"}}
        )
        assert raw.status_code == 422
        assert raw.json()["detail"].startswith("warm_start.run: a path on the machine")
    # an enqueued value inside this spec's range but outside the old ranges stage 1 opens
    # with is noted; one inside those is not
    old_high = float(last["learning_rate"]["log_uniform"][1])
    wide = {**TINY_SPEC["space"], "learning_rate": {"log_uniform": [1e-2, 100.0]}}
    base = {name: next(iter(last[name].values()))[0] for name in ("reg", "hidden")}
    enqueued = [{**base, "learning_rate": old_high * 2}, {**base, "learning_rate": old_high}]
    spec_file.write_text(
        yaml.safe_dump({**TINY_SPEC, "name": "warm2", "space": wide, "enqueue": enqueued,
                        "warm_start": {"run": "old-run"}})
    )  # fmt: skip
    notes = validate(spec_file).outside_range()
    assert len(notes) == 1
    assert notes[0].startswith("enqueue[0].learning_rate = ")
    missing = tmp_path / "missing.yaml"
    missing.write_text(yaml.safe_dump({**TINY_SPEC, "warm_start": {"run": "nowhere"}}))
    with pytest.raises(GridlessError, match="holds no run"):
        validate(missing)
