"""The model-based sampler end to end: a study with `sampler: tpe`, two real Ray workers,
real HTTP and SQLite; the master's TPE model chooses the parameters once its start-up is
over, learning across the stages, inside each stage's narrowed ranges."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select

from gridless.common.db import StageRow, TrialRow, session_scope
from gridless.common.space import parse_space
from gridless.master.sampler_state import N_STARTUP
from tests.conftest import Master, run_with_ray, tiny_spec

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_a_default_study_runs_on_the_model_through_ray_workers(
    master: Master, ray_session: object
) -> None:
    spec = tiny_spec(
        sampler="tpe", stages=[{"trials": 14, "epochs": 1}, {"trials": 6, "epochs": 1}]
    )
    study_id = run_with_ray(master, spec, workers=2)

    with session_scope(master.service.sessions) as s:
        trials = list(s.scalars(select(TrialRow).where(TrialRow.study_id == study_id)))
        stage_ids = list(
            s.scalars(
                select(StageRow.id).where(StageRow.study_id == study_id).order_by(StageRow.index)
            )
        )
    assert len(trials) == 20
    assert {t.state for t in trials} <= {"completed", "stopped", "diverged"}
    stages = httpx.get(f"{master.url}/api/v1/studies/{study_id}/stages").json()
    assert [s["state"] for s in stages] == ["done", "done"]
    box = parse_space(stages[1]["space"])
    second = [t for t in trials if t.stage_id == stage_ids[1]]
    assert len(second) == 6
    assert all(box[k].contains(v) for t in second for k, v in (t.params or {}).items())

    state = master.app.state.protocol.sampler.states[study_id]
    # suggestions for stage 1 after its start-up, and for all of stage 2, which started
    # from stage 1's trials (its view held them before its first claim)
    assert state.asks >= (14 - N_STARTUP - 2) + 6
    assert state.builds == 2  # one model a stage, not one a claim
    assert state.view is not None
    assert state.view.key.startswith("1:")
    # more than stage 2's own six trials: stage 1's are in its model
    assert state.view.observed > 6
