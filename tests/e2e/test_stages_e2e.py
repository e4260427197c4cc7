"""Coarse-to-fine on digits through real Ray workers, checked through the API."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import httpx
import pytest

from gridless.common.space import parse_space
from gridless.common.spec import load_spec, parse_spec
from tests.conftest import Master, run_with_ray

pytestmark = [pytest.mark.ray, pytest.mark.slow]
EXAMPLES = Path(__file__).parents[2] / "examples"


def run(master: Master, spec: Any) -> dict[str, Any]:
    study_id = run_with_ray(master, spec)
    return dict(httpx.get(f"{master.url}/api/v1/studies/{study_id}").json())


def test_three_stages_narrow_every_numeric_range_and_grow_the_epochs(
    master: Master, ray_session: object
) -> None:
    spec = parse_spec(
        {
            "name": "narrowing",
            "space": {
                "learning_rate": {"log_uniform": [1e-4, 10.0]},
                "reg": {"log_uniform": [1e-7, 1.0]},
                "dropout": {"uniform": [0.0, 0.9]},
            },
            "early_stopping": {"rule": "none"},
            "stages": [
                {"trials": 30, "epochs": 1},
                {"trials": 15, "epochs": 3},
                {"trials": 8, "epochs": 8},
            ],
        }
    )
    study = run(master, spec)
    stages = study["stages"]
    assert [s["epochs"] for s in stages] == [1, 3, 8]
    assert [s["state"] for s in stages] == ["done", "done", "done"]
    for before, after in itertools.pairwise(stages):
        old, new = parse_space(before["space"]), parse_space(after["space"])
        for name in ("learning_rate", "reg", "dropout"):
            o, n = old[name], new[name]
            width = lambda d: d.to_scale(d.high) - d.to_scale(d.low)  # noqa: E731
            assert o.low <= n.low, (name, before["index"])
            assert n.high <= o.high, (name, before["index"])
            assert width(n) < width(o), (name, before["index"])
        assert {d["param"] for d in before["decisions"]["decisions"]} == {
            "learning_rate",
            "reg",
            "dropout",
        }
    assert study["best_score"] >= 0.97


def test_a_range_short_of_the_good_region_is_flagged_and_extended(
    master: Master, ray_session: object
) -> None:
    border = run(master, load_spec(EXAMPLES / "digits-border.yaml"))
    wide = run(master, load_spec(EXAMPLES / "digits-wide.yaml"))
    lr_flags = [f for f in border["border_flags"] if f["param"] == "learning_rate"]
    assert lr_flags[0]["edge"] == "upper"
    assert lr_flags[0]["stage"] == 1
    assert lr_flags[0]["message"].startswith("learning_rate range [1e-06, 0.001] is too low")
    later = [parse_space(s["space"])["learning_rate"].high for s in border["stages"][1:]]
    assert max(later) > 1e-3, "a later stage's range reaches past the flagged edge"
    assert border["best_score"] >= wide["best_score"] - 0.01, (
        border["best_score"],
        wide["best_score"],
    )
