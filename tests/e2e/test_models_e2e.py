"""The Torch twin and a custom model run whole studies through real Ray workers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gridless.common.spec import load_spec
from tests.conftest import Master, run_with_ray, tiny_spec

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.torch]
EXAMPLES = Path(__file__).parents[2] / "examples"


def test_torch_mlp_study_end_to_end_with_weights_only_checkpoints(
    master: Master, ray_session: object
) -> None:
    study_id = run_with_ray(master, tiny_spec(model="torch.mlp"))
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
    study_id = run_with_ray(master, spec, python_path=[str(EXAMPLES)])
    trials, count = master.service.ranked_trials(study_id, limit=50, offset=0)
    # the plan's 18 trials at least: a border walk may add a stage, paid from the later
    # stages' epochs, so the study trains no more than the plan's 30 epochs
    assert count >= 18
    stages = master.service.stages(study_id)
    assert sum(st.trials * st.epochs for st in stages) <= 12 * 1 + 6 * 3, [
        (st.trials, st.epochs) for st in stages
    ]
    assert {t.state for t in trials} <= {"completed", "stopped"}, [t.error for t in trials]
    for t in trials:
        if t.state == "stopped":  # the median rule may stop a stage-2 trial early
            assert t.error.startswith("early stop (median rule)")
    assert trials[0].best_score > 0.85
