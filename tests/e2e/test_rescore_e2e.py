"""Re-scoring through a real master and real Ray workers: score =
quality(params) + noise(seed), one lucky seed ranks a worse configuration first, and the
re-runs on more seeds make the higher-mean configuration the study's best."""

from __future__ import annotations

import textwrap
from pathlib import Path

import httpx
import pytest

from gridless.common.spec import parse_spec
from tests.conftest import Master, run_with_ray
from tests.master.test_rescore import NOISY, noisy_spec

pytestmark = [pytest.mark.slow, pytest.mark.ray]


def test_the_higher_mean_configuration_is_chosen_over_a_lucky_seed(
    master: Master, tmp_path: Path, ray_session: object
) -> None:
    user = tmp_path / "user"
    user.mkdir()
    (user / "noisy.py").write_text(textwrap.dedent(NOISY))
    spec = parse_spec(noisy_spec("noisy:main", rescore={"top": 2, "seeds": 3}))
    study_id = run_with_ray(master, spec, workers=2, python_path=[str(user)])
    with httpx.Client(base_url=f"{master.url}/api/v1") as api:
        detail = api.get(f"/studies/{study_id}").json()
        ranked = api.get(f"/studies/{study_id}/trials", params={"limit": 100}).json()["data"]
    lucky = max(ranked, key=lambda t: t["best_score"])
    assert (lucky["number"], lucky["params"]) == (0, {"x": 0.2})  # first by one seed
    best = ranked[0]
    assert (best["number"], best["params"], best["rank"]) == (1, {"x": 0.7}, 1)
    assert best["selection_score"] > lucky["selection_score"]
    assert detail["best_score"] == best["selection_score"]
    reruns = [t for t in ranked if t["origin"] == "rescore"]
    assert len(reruns) == 4
    assert {t["parent_id"] for t in reruns} == {lucky["id"], best["id"]}
    assert {t["state"] for t in ranked} == {"completed"}
    # the ensembles' inputs follow the same ranking: the chosen configuration first
    inputs = master.service.ensemble_inputs(study_id, 1)[1]
    assert inputs[0][0].number == 1
