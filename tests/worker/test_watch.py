"""`trial.watch(model, optimizer)`: the built-in models' babysitting on any torch module."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import gridless
from gridless.worker.trainer import make_trainer
from gridless.worker.watch import Watch, hidden_layers

pytestmark = pytest.mark.torch

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "pytorch"


class Capture:
    """A backend that keeps what a trial sends."""

    metric = "val_accuracy"
    first_epoch = 1
    deferred = False  # each report is sent at once, as to the console

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(
        self,
        epoch: int,
        metrics: Any,
        diverged: Any,
        *,
        stats: Any = None,
        warnings: Any = None,
        checkpoint: Any = None,
    ) -> bool:
        self.sent.append({"epoch": epoch, "stats": stats, "warnings": warnings or []})
        return False

    def write(self, *_: Any, **__: Any) -> None:
        return None

    def attach(self, epoch: int, checkpoint: Any) -> None:
        return None

    def resume_file(self) -> None:
        return None

    def codes(self) -> set[str]:
        return {w["code"] for report in self.sent for w in report["warnings"]}


class Functional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc1 = nn.Linear(4 * 8 * 8, 16)
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.fc1(F.relu(self.conv(x)).flatten(1))))


def test_hidden_layers_are_the_activations_or_the_weighted_layers_but_the_head() -> None:
    seq = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2))
    assert [name for name, _ in hidden_layers(seq)] == ["1", "3"]
    assert [name for name, _ in hidden_layers(Functional())] == ["conv", "fc1"]
    assert [name for name, _ in hidden_layers(nn.Linear(3, 1))] == [""]


def test_the_update_ratio_is_the_optimizers_actual_step() -> None:
    torch.manual_seed(0)
    model = nn.Linear(5, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    watch = Watch(model, optimizer, every=1)
    x, y = torch.randn(16, 5), torch.randn(16, 3)
    before = model.weight.detach().clone()
    F.mse_loss(model(x), y).backward()
    expected = float((0.1 * model.weight.grad).norm() / before.norm())
    optimizer.step()
    stats = watch.collect()
    assert stats["update_ratio"]["weight"] == pytest.approx(expected, rel=1e-5)
    assert stats["learning_rate"] == 0.1
    assert watch.collect().get("update_ratio") is None  # the accumulators start over


def run_steps(model: nn.Module, optimizer: Any, steps: int, *, batch: int = 8) -> None:
    for _ in range(steps):
        x, y = torch.randn(batch, 1, 8, 8), torch.randint(0, 3, (batch,))
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()


def test_hooks_sample_one_step_in_every_and_skip_evaluation(monkeypatch: Any) -> None:
    torch.manual_seed(0)
    model = Functional()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    watch = Watch(model, optimizer, every=5)
    run_steps(model, optimizer, 12)  # steps 0, 5 and 10 are sampled
    model.eval()
    with torch.no_grad():
        model(torch.randn(4, 1, 8, 8) * 1e6)  # evaluation must not count
    assert [len(v) for v in watch._ratios.values()] == [3] * 6
    assert len(watch._acts[0]["act_std"]) == 3
    assert len(watch._acts[0]["grad_std"]) == 3
    transfers = []
    real = torch.Tensor.tolist
    monkeypatch.setattr(torch.Tensor, "tolist", lambda t: transfers.append(1) or real(t))
    stats = watch.collect()
    assert transfers == [1]  # the epoch's numbers reach the host in one transfer
    assert [layer["name"] for layer in stats["layers"]] == ["conv", "fc1"]
    assert all(layer["act_std"] < 1e3 for layer in stats["layers"])
    assert stats["first_layer"]["shape"] == [4, 1, 3, 3]


def test_close_removes_every_hook() -> None:
    model = Functional()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    trial = gridless.Trial(max_epochs=1, backend=Capture())
    trial.watch(model, optimizer)
    trial.close()
    assert not any(m._forward_hooks for m in model.modules())
    assert not optimizer._optimizer_step_pre_hooks
    assert not optimizer._optimizer_step_post_hooks


def test_bad_arguments_say_what_is_wrong() -> None:
    trial = gridless.Trial()
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module"):
        trial.watch(object())
    with pytest.raises(TypeError, match=r"optimizer must be a torch\.optim\.Optimizer"):
        trial.watch(nn.Linear(2, 2), "adam")
    with pytest.raises(ValueError, match="every must be an integer >= 1"):
        trial.watch(nn.Linear(2, 2), every=0)


def test_on_a_built_in_model_watch_gives_the_built_in_statistics() -> None:
    """The same model and optimizer: the watch's numbers equal the built-in trainer's."""
    params = {"hidden": 32, "layers": 2, "learning_rate": 0.05, "update": "momentum"}
    ratios = make_trainer("torch.mlp", "digits", params, seed=3)
    watch = Watch(ratios.model, ratios.optimizer, every=1)  # type: ignore[attr-defined]
    built_in = ratios.train_epoch().stats
    watched = watch.collect()
    assert set(watched["update_ratio"]) == set(built_in["update_ratio"])
    for name, value in built_in["update_ratio"].items():
        assert watched["update_ratio"][name] == pytest.approx(value, rel=1e-4)
    # layer statistics: the built-in records the first batch of the epoch
    first = make_trainer("torch.mlp", "digits", params, seed=3)
    watch = Watch(first.model, first.optimizer, every=10**6)  # type: ignore[attr-defined]
    built_in = first.train_epoch().stats
    watched = watch.collect()
    assert len(watched["layers"]) == len(built_in["layers"]) == 2
    for ours, theirs in zip(watched["layers"], built_in["layers"], strict=True):
        assert ours["layer"] == theirs["layer"]
        for key in ("act_mean", "act_std", "grad_std"):
            assert ours[key] == pytest.approx(theirs[key], rel=1e-4)


def example_trial(monkeypatch: Any, tmp_path: Path, lr: float) -> Capture:
    monkeypatch.setenv("EXAMPLE_DATA", str(tmp_path))
    monkeypatch.syspath_prepend(str(EXAMPLES))
    sys.modules.pop("train", None)
    import train  # examples/pytorch/train.py, as a study runs it

    backend = Capture()
    train.main(gridless.Trial({**train.CONFIG, "lr": lr}, max_epochs=2, backend=backend))
    return backend


def test_the_example_with_a_learning_rate_100x_too_high_is_told_so(
    monkeypatch: Any, tmp_path: Path
) -> None:
    good = example_trial(monkeypatch, tmp_path, 3e-3)
    assert good.codes() == set()
    stats = good.sent[0]["stats"]
    assert {"conv1.weight", "fc2.bias"} <= set(stats["update_ratio"])
    assert [layer["name"] for layer in stats["layers"]] == ["conv1", "conv2", "fc1"]
    assert stats["first_layer"]["shape"] == [16, 1, 3, 3]
    high = example_trial(monkeypatch, tmp_path, 0.3)
    assert "lr_too_high" in high.codes()
    message = next(w for r in high.sent for w in r["warnings"] if w["code"] == "lr_too_high")
    assert "learning rate too high" in message["message"]


def deep_mlp(std: float | None) -> nn.Module:
    layers: list[nn.Module] = []
    for fan_in in (64,) + (256,) * 7:
        linear = nn.Linear(fan_in, 256)
        with torch.no_grad():
            if std is None:  # He
                linear.weight.normal_(0.0, (2.0 / fan_in) ** 0.5)
            else:
                linear.weight.normal_(0.0, std)
            linear.bias.zero_()
        layers += [linear, nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(256, 10))


@pytest.mark.parametrize(("std", "vanishes"), [(0.01, True), (None, False)])
def test_a_naive_init_of_a_deep_mlp_is_told_its_activations_vanish(
    std: float | None, vanishes: bool
) -> None:
    torch.manual_seed(0)
    model = deep_mlp(std)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
    backend = Capture()
    trial = gridless.Trial(max_epochs=1, backend=backend)
    trial.watch(model, optimizer)
    rng = np.random.default_rng(0)
    for _ in range(3):
        x = torch.as_tensor(rng.normal(size=(32, 64)), dtype=torch.float32)
        y = torch.as_tensor(rng.integers(0, 10, 32))
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    trial.report(1, train_loss=2.3, val_accuracy=0.1)
    assert ("vanishing_activations" in backend.codes()) is vanishes
    stds = [layer["act_std"] for layer in backend.sent[0]["stats"]["layers"]]
    assert len(stds) == 8
    if vanishes:
        assert stds[-1] < 1e-3 * stds[0]


def test_the_overhead_benchmark_runs() -> None:
    """benchmarks/watch.py at a tiny size, so the figure in the docs stays measurable."""
    from benchmarks.watch import measure

    results = measure(steps=3, rounds=1)
    assert set(results) == {"examples/pytorch CNN", "8x256 ReLU MLP"}
    for r in results.values():
        assert r["plain_ms"] > 0
        assert r["watched_ms"] > 0
