"""`gridless.checks` on a user's Torch code, and `gridless check` on a `train:` function
and on a built-in regression model: what ran, what was skipped, a planted bug caught."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import gridless.checks  # noqa: E402

pytestmark = pytest.mark.torch

USER_MODULE = '''
import torch
from torch import nn
from torch.nn import functional as F

import gridless
import gridless.checks

BUG = {bug}


class Square(torch.autograd.Function):
    """x**2 with a hand-written backward: the kind of custom layer a gradcheck is for."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * (3 if BUG else 2) * x


class Net(nn.Module):
    def __init__(self, hidden):
        super().__init__()
        self.fc1 = nn.Linear(4, hidden)
        self.fc2 = nn.Linear(hidden, 3)

    def forward(self, x):
        return self.fc2(Square.apply(self.fc1(x)))


def data(n):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    return x, (x[:, 0] > 0).long() + (x[:, 1] > 0).long()


def main(trial):
    torch.manual_seed(0)
    x, y = data(20 if trial.subset else 400)
    model = Net(int(trial.params["hidden"]))
    if trial.subset:
        gridless.checks.gradcheck(model, x[:3], y[:3], loss_fn=F.cross_entropy)
        gridless.checks.sanity(model, F.cross_entropy, (x, y), num_classes=3)
    optimizer = torch.optim.Adam(model.parameters(), lr=trial.params["lr"])
    for epoch in trial.epochs():
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        trial.report(epoch, train_loss=loss.item(), val_loss=loss.item())
'''


def square_net(bug: bool) -> tuple[object, object]:
    namespace: dict[str, object] = {}
    exec(textwrap.dedent(USER_MODULE.format(bug=bug)), namespace)  # a user's module
    net = namespace["Net"](8)  # type: ignore[operator]
    return net, namespace["data"]


def test_gradcheck_passes_a_correct_module_and_catches_a_wrong_backward() -> None:
    from torch.nn import functional as F

    good, data = square_net(bug=False)
    x, y = data(3)  # type: ignore[operator]
    report = gridless.checks.gradcheck(good, x, y, loss_fn=F.cross_entropy)
    assert report.passed, [r.to_json() for r in report.rows]
    assert {r.name for r in report.rows} == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}
    assert all(r.phase == "data" for r in report.rows)

    bad, _ = square_net(bug=True)
    report = gridless.checks.gradcheck(bad, x, y, loss_fn=F.cross_entropy)
    assert not report.passed
    wrong = {r.name for r in report.failures()}
    assert {"fc1.weight", "fc1.bias"} <= wrong  # the layers below the bad backward
    assert "fc2.weight" not in wrong  # above it the gradient is right
    assert all(r.verdict in ("probably wrong", "uncomfortable") for r in report.failures())


def test_gradcheck_without_a_loss_differentiates_a_projection_of_the_outputs() -> None:
    bad, data = square_net(bug=True)
    x, _ = data(2)  # type: ignore[operator]
    assert not gridless.checks.gradcheck(bad, x).passed
    good, _ = square_net(bug=False)
    assert gridless.checks.gradcheck(good, x).passed


def test_sanity_checks_a_classifier() -> None:
    from torch.nn import functional as F

    net, data = square_net(bug=False)
    x, y = data(20)  # type: ignore[operator]
    chance, overfit = gridless.checks.sanity(net, F.cross_entropy, (x, y), num_classes=3)
    assert chance.passed, chance.detail
    assert f"{np.log(3):.4f}" in chance.detail
    assert overfit.passed, overfit.detail


def check(spec: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gridless", "check", str(spec)],
        cwd=spec.parent,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )


def write_project(folder: Path, *, bug: bool) -> Path:
    folder.mkdir()
    (folder / "net.py").write_text(textwrap.dedent(USER_MODULE.format(bug=bug)))
    (folder / "study.yaml").write_text(
        "name: checked\ntrain: net:main\nmetric: val_loss\n"
        "space: {lr: {log_uniform: [1.0e-3, 1.0e-1]}, hidden: {int: [4, 16]}}\n"
        "stages: [{trials: 2, epochs: 2}]\n"
    )
    return folder / "study.yaml"


def test_gridless_check_of_a_train_function_says_what_ran(tmp_path: Path) -> None:
    done = check(write_project(tmp_path / "good", bug=False))
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "pass  imports: net:main is callable" in out
    assert "pass  smoke run: 2 epoch(s) on a tiny subset (trial.subset)" in out
    assert "pass  reports the metric: val_loss in every report" in out
    assert "pass  loss decreases: train_loss" in out
    assert "gradient check (pass: relative error <=" in out
    assert "pass  gradient check: worst " in out
    assert "pass  initial loss at chance" in out
    assert "pass  overfit 20 examples" in out
    assert "checks that ran pass" in out


def test_gridless_check_fails_a_planted_wrong_gradient(tmp_path: Path) -> None:
    done = check(write_project(tmp_path / "bad", bug=True))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "probably wrong" in done.stdout
    assert "FAIL  gradient check: worst fc1." in done.stdout
    assert "wrong: fc1.weight, fc1.bias" in done.stdout
    assert "checks failed" in done.stdout


def test_gridless_check_says_what_it_skipped(tmp_path: Path) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "plain.py").write_text(
        "def main(trial):\n    for e in trial.epochs():\n        trial.report(e, score=1.0 / e)\n"
    )
    (folder / "study.yaml").write_text(
        "name: plain\ntrain: plain:main\nmetric: {name: score, mode: min}\n"
        "space: {x: {uniform: [0.0, 1.0]}}\nstages: [{trials: 1, epochs: 2}]\n"
    )
    done = check(folder / "study.yaml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "skipped  tiny subset: the function does not read trial.subset" in done.stdout
    assert "skipped  loss decreases: needs a metric named *loss*" in done.stdout
    assert (
        "skipped  gradient check: the function calls no gridless.checks.gradcheck" in done.stdout
    )
    assert "skipped  sanity checks" in done.stdout


def test_gridless_check_of_a_regression_model_says_what_ran_and_what_not(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6))
    np.savez(tmp_path / "reg.npz", x=x, y=x @ rng.normal(size=6))
    (tmp_path / "study.yaml").write_text(
        f"name: reg\nmodel: numpy.mlp\ndataset: {{npz: {tmp_path / 'reg.npz'}}}\n"
        "metric: val_r2\nfixed: {loss: mse}\n"
        "space: {learning_rate: {log_uniform: [1.0e-4, 1.0e-2]}}\n"
        "stages: [{trials: 1, epochs: 1}]\n"
    )
    done = check(tmp_path / "study.yaml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "gradient check (pass: relative error <=" in done.stdout
    assert "pass  initial loss at chance" in done.stdout
    assert "pass  overfits 20 examples" in done.stdout
    assert "skipped 100% training accuracy of the overfit check" in done.stdout
