"""The digits example end to end through Ray, then its ensembles (issue 7's bar)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from gridless.common.spec import load_spec
from tests.conftest import Master, run_with_ray

pytestmark = [pytest.mark.ray, pytest.mark.slow]
EXAMPLES = Path(__file__).parents[2] / "examples"


def test_top_5_ensemble_of_the_digits_study_is_at_least_the_best_single_model(
    master: Master, ray_session: object
) -> None:
    study_id = run_with_ray(master, load_spec(EXAMPLES / "digits.yaml"))
    report = httpx.post(
        f"{master.url}/api/v1/studies/{study_id}/ensembles", json={"k": 5}, timeout=300
    ).json()
    rows = {r["kind"]: r for r in reversed(report["rows"])}  # the first "single" is the best
    best, top5 = report["rows"][0], rows["top_k"]
    assert best["name"].startswith("best single model")
    assert top5["members"] == 5
    assert top5["val_accuracy"] >= best["val_accuracy"]
    assert {"seeds", "epochs", "ema"} <= set(rows)
