"""The digits example end to end through Ray, then its ensembles (issue 7's bar)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from common.spec import load_spec
from master.launcher import RayLauncher
from tests.conftest import Master

pytestmark = [pytest.mark.ray, pytest.mark.slow]
EXAMPLES = Path(__file__).parents[2] / "examples"


def test_top_5_ensemble_of_the_digits_study_is_at_least_the_best_single_model(
    master: Master, ray_session: object
) -> None:
    study = master.service.create_study(load_spec(EXAMPLES / "digits.yaml"))
    launcher = RayLauncher(master.url, str(master.store_root))
    launcher.launch(2)
    try:
        deadline = time.monotonic() + 300
        while master.service.progress(study.id).state == "running":
            assert time.monotonic() < deadline
            time.sleep(0.5)
    finally:
        launcher.shutdown()
    report = httpx.post(
        f"{master.url}/api/v1/studies/{study.id}/ensembles", json={"k": 5}, timeout=300
    ).json()
    rows = {r["kind"]: r for r in reversed(report["rows"])}  # the first "single" is the best
    best, top5 = report["rows"][0], rows["top_k"]
    assert best["name"].startswith("best single model")
    assert top5["members"] == 5
    assert top5["val_accuracy"] >= best["val_accuracy"]
    assert {"seeds", "epochs", "ema"} <= set(rows)
