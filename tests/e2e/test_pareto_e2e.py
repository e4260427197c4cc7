"""A 2-objective study end to end through `gridless run` (real Ray workers): the result
table is the Pareto front, sorted by the first objective, with a line saying it is a
2-objective study; the table's trials are exactly the API's front."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from gridless.common.db import session_scope
from gridless.master.pareto import non_dominated, study_front
from tests.e2e.test_user_code import open_run, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.ray]

FUNCTION = """
def main(trial):
    width, depth = trial.params["width"], trial.params["depth"]
    for epoch in range(1, trial.max_epochs + 1):
        # a wider model scores better and answers slower; depth only costs time
        trial.report(
            epoch,
            val_f1=width * (1 - 0.5 ** epoch),
            latency_ms=5 + 50 * width + 10 * depth,
        )
"""

SPEC = """\
name: f1-latency
train: model_fn:main
metric:
  - {name: val_f1, mode: max}
  - {name: latency_ms, mode: min}
space:
  width: {uniform: [0.05, 1.0]}
  depth: {int: [1, 4]}
narrowing: {max_extra_stages: 0}
stages:
  - {trials: 10, epochs: 2}
  - {trials: 4, epochs: 2}
"""


def test_a_two_objective_study_ends_with_its_pareto_front(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "model_fn.py").write_text(textwrap.dedent(FUNCTION))
    (project / "study.yaml").write_text(SPEC)
    done = run_cli("run", "study.yaml", "--run-dir", "runs", "--workers", "2", cwd=project)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout

    _, app = open_run(project / "runs")
    service = app.state.service
    study = service.get_study(1)
    with session_scope(service.sessions) as s:
        front = study_front(s, study)
    numbers = [t.number for t, _ in front]
    assert 1 <= len(numbers) < 14
    f1s = [values[0] for _, values in front]
    assert f1s == sorted(f1s, reverse=True)  # best first by the first objective
    # no finished trial beats a front trial on both objectives
    trials, _ = service.ranked_trials(1, limit=100, offset=0)
    everyone = [(t.best_score, t.best_metrics["latency_ms"]) for t in trials]
    on_front = {everyone[i] for i in non_dominated(everyone, (1.0, -1.0))}
    assert {values for _, values in front} == on_front

    assert f"f1-latency: Pareto front, {len(numbers)} trial" in out
    assert "sorted by val_f1" in out
    line = re.sub(r"\s+", " ", out)
    assert (
        f"a 2-objective study (val_f1 (max), latency_ms (min)): the table is its Pareto "
        f"front, the {len(numbers)} of 14 finished trials" in line
    )
    header = next(row for row in out.splitlines() if "┃ rank" in row)
    assert re.search(r"rank .* trial .* val_f1 .* latency_ms .* epoch", header)
    rows = [row for row in out.splitlines() if re.match(r"^\W+\d+\W+\d+\W", row)]
    shown = [int(re.findall(r"\d+", row)[1]) for row in rows]  # the trial column
    assert shown == numbers
