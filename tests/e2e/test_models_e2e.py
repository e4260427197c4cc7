"""The Torch twin and a custom model run whole studies through real Ray workers."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from common.spec import load_spec
from master.launcher import RayLauncher
from tests.conftest import Master, tiny_spec

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.torch]
EXAMPLES = Path(__file__).parents[2] / "examples"


def run_study(master: Master, spec: object, *, python_path: list[str] | None = None) -> int:
    study = master.service.create_study(spec)
    launcher = RayLauncher(master.url, str(master.store_root), python_path=python_path)
    launcher.launch(2)
    try:
        deadline = time.monotonic() + 180
        while master.service.progress(study.id).state == "running":
            assert time.monotonic() < deadline, "the study did not finish in time"
            time.sleep(0.2)
    finally:
        launcher.shutdown()
    return int(study.id)


def test_torch_mlp_study_end_to_end_with_weights_only_checkpoints(
    master: Master, ray_session: object
) -> None:
    study_id = run_study(master, tiny_spec(model="torch.mlp"))
    trials, count = master.service.ranked_trials(study_id, limit=10, offset=0)
    assert count == 6
    assert {t.state for t in trials} == {"completed"}
    assert trials[0].best_score > 0.8
    files = sorted((master.store_root / "tiny").glob("*/*.pt"))
    assert files, "torch checkpoints are .pt files"
    state = torch.load(files[0], weights_only=True)
    assert "model" in state
    assert not list((master.store_root / "tiny").glob("*/*.npz"))


def test_custom_model_study_end_to_end(master: Master, ray_session: object) -> None:
    spec = load_spec(EXAMPLES / "custom.yaml")
    study_id = run_study(master, spec, python_path=[str(EXAMPLES)])
    trials, count = master.service.ranked_trials(study_id, limit=50, offset=0)
    assert count == 18
    assert {t.state for t in trials} <= {"completed", "stopped"}, [t.error for t in trials]
    for t in trials:
        if t.state == "stopped":  # the median rule may stop a stage-2 trial early
            assert t.error.startswith("early stop (median rule)")
    assert trials[0].best_score > 0.85
