"""Torch models on the trial's device: the device reaches the trainer, and an
epoch's statistics stay on the device, read by the host a few times an epoch, not per step.

This machine has no GPU: the tests train on the CPU and count the reads that would make
the host wait for a GPU.
"""

from __future__ import annotations

import collections
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from gridless.worker import loop, torch_trainer
from gridless.worker.data import load_dataset
from gridless.worker.loop import run_worker
from gridless.worker.numpy_trainer import NumpyTrainer
from gridless.worker.torch_stats import DIVERGENCE_CHECK_STEPS, EpochStats, mean_update_ratios
from gridless.worker.torch_trainer import TorchTrainer
from gridless.worker.trainer import make_trainer
from gridless.worker.training import EXPLODE_FACTOR
from tests.conftest import Master, tiny_spec

pytestmark = pytest.mark.torch

EXAMPLES = Path(__file__).parents[2] / "examples"
# Every way a tensor's value reaches Python; on a GPU each one waits for the device.
HOST_READS = ("item", "tolist", "__float__", "__int__", "__bool__", "__index__", "numpy")


@pytest.fixture
def host_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[[], collections.Counter[str]]:
    """Call it to start counting reads of tensor values by the host, by method."""
    counts: collections.Counter[str] = collections.Counter()

    def start() -> collections.Counter[str]:
        for name in HOST_READS:
            real = getattr(torch.Tensor, name)

            def spy(self: torch.Tensor, *args: Any, _real: Any = real, _name: str = name) -> Any:
                counts[_name] += 1
                return _real(self, *args)

            monkeypatch.setattr(torch.Tensor, name, spy)
        return counts

    return start


def epoch_stats(trainer: TorchTrainer, epochs: int) -> list[tuple[Any, ...]]:
    runs = [trainer.train_epoch() for _ in range(epochs)]
    return [
        (m.stats["loss_history"], m.stats["update_ratio"], m.stats["layers"], m.val_loss)
        for m in runs
    ]


def test_an_explicit_cpu_device_trains_exactly_as_the_default() -> None:
    data = load_dataset("digits")
    params = {"dropout": 0.2, "ema": 0.9, "layers": 2}
    default = TorchTrainer(data, params, seed=3)
    explicit = TorchTrainer(data, params, seed=3, device="cpu")
    assert explicit.device == torch.device("cpu")
    assert {p.device for p in explicit.model.parameters()} == {torch.device("cpu")}
    assert epoch_stats(default, 2) == epoch_stats(explicit, 2)
    built = make_trainer("torch.mlp", "digits", params, seed=3, device="cpu")
    assert isinstance(built, TorchTrainer)
    assert epoch_stats(built, 2) == epoch_stats(TorchTrainer(data, params, seed=3), 2)


@pytest.mark.parametrize(
    ("kind", "params"),
    [
        ("mlp", {}),
        ("mlp", {"update": "nesterov", "loss": "svm", "learning_rate": 0.01}),
        # 1257 examples: batches of 9 leave 6 in the last, which batchnorm can normalize
        ("mlp", {"batch_size": 9, "layers": 2, "batchnorm": True, "dropout": 0.2}),
        ("convnet", {"filters": 4, "hidden": 16}),
    ],
    ids=["default", "nesterov-svm", "deep-batchnorm-dropout", "convnet"],
)
def test_an_epoch_reads_its_statistics_a_few_times_not_every_step(
    kind: str,
    params: dict[str, Any],
    host_reads: Callable[[], collections.Counter[str]],
) -> None:
    # (Adam's and Adagrad's step counters and the EMA's count are CPU tensors whatever the
    # device, so torch reads them every step without waiting for a GPU; this spy, on a
    # CPU, cannot tell them apart, so those options are left out.)
    trainer = TorchTrainer(load_dataset("digits"), {"batch_size": 8, **params}, seed=0, kind=kind)
    steps = math.ceil(trainer.x_train.shape[0] / int(trainer.hp["batch_size"]))
    assert steps > 100
    counts = host_reads()
    losses, ratios, layers, diverged = trainer._minibatch_epoch()
    reads = sum(counts.values())
    assert reads <= steps / DIVERGENCE_CHECK_STEPS + 2, counts
    assert (len(losses), diverged) == (steps, False)
    assert set(ratios) == {name for name, _ in trainer.model.named_parameters()}
    keys = {"layer", "act_mean", "act_std", "dead_fraction", "grad_std"}
    assert all(set(layer) == keys for layer in layers)


def test_a_diverging_epoch_stops_at_the_next_check_and_reports_up_to_the_explosion() -> None:
    trainer = TorchTrainer(
        load_dataset("digits"), {"learning_rate": 1e4, "update": "sgd", "batch_size": 8}, seed=0
    )
    steps_taken = 0
    real_step = trainer.optimizer.step

    def counting_step(*args: Any, **kwargs: Any) -> Any:
        nonlocal steps_taken
        steps_taken += 1
        return real_step(*args, **kwargs)

    trainer.optimizer.step = counting_step  # type: ignore[method-assign]
    m = trainer.train_epoch()
    history = m.stats["loss_history"]
    first = history[0]
    assert trainer.first_loss == first
    assert m.diverged
    assert m.stats["update_ratio"] == {}

    def explodes(loss: float) -> bool:
        return not math.isfinite(loss) or loss > EXPLODE_FACTOR * max(first, 1.0)

    assert explodes(history[-1])
    assert not any(explodes(loss) for loss in history[:-1])
    # it trains on for less than one check's worth of steps past the explosion
    assert steps_taken < len(history) + DIVERGENCE_CHECK_STEPS


def test_the_first_loss_is_the_trials_first_step_loss() -> None:
    trainer = TorchTrainer(load_dataset("digits"), {}, seed=0)
    first = trainer.train_epoch().stats["loss_history"][0]
    assert trainer.first_loss == first
    trainer.train_epoch()
    assert trainer.first_loss == first


def test_mean_update_ratios_average_steps_and_give_zero_for_zero_weights() -> None:
    # two steps of two arrays: weight norms (2, 0) then (4, 0), update norms after them
    norms = torch.tensor([[2.0, 0.0, 0.02, 0.5], [4.0, 0.0, 0.08, 0.1]])
    ratios = mean_update_ratios(norms)
    assert ratios.dtype == torch.float64
    assert ratios.tolist() == pytest.approx([0.015, 0.0], rel=1e-6)


def test_epoch_stats_before_any_step_report_nothing() -> None:
    assert EpochStats(torch.nn.Linear(2, 2)).finish() == ([], {}, [])


def test_checkpoints_keep_the_module_metadata(tmp_path: Path) -> None:
    trainer = TorchTrainer(load_dataset("digits"), {"batchnorm": True}, seed=0)
    trainer.train_epoch()
    path = tmp_path / "ck.pt"
    with path.open("wb") as handle:
        trainer.write_checkpoint(handle, {})
    state = torch.load(path, weights_only=True)
    # the versions of module layouts (BatchNorm's is 2) that load_state_dict reads
    expected = trainer.model.state_dict()._metadata  # type: ignore[attr-defined]
    assert state["model"]._metadata == expected
    assert all(t.device == torch.device("cpu") for t in state["model"].values())


def test_make_trainer_gives_the_device_to_torch_models_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    devices: list[str] = []

    class Recording(TorchTrainer):
        def __init__(self, *args: Any, device: str = "cpu", **kwargs: Any) -> None:
            devices.append(device)
            super().__init__(*args, **kwargs)  # on the CPU: this machine has no GPU

    monkeypatch.setattr(torch_trainer, "TorchTrainer", Recording)
    for kind in ("mlp", "convnet"):
        make_trainer(f"torch.{kind}", "digits", {}, seed=0, device="cuda:1")
    assert devices == ["cuda:1", "cuda:1"]
    # NumPy models are CPU models; a custom factory keeps its (data, params, seed)
    assert isinstance(make_trainer("numpy.mlp", "digits", {}, seed=0, device="cuda"), NumpyTrainer)
    monkeypatch.syspath_prepend(str(EXAMPLES))
    custom = make_trainer("custom_model:build", "digits", {}, seed=0, device="cuda")
    assert custom.train_epoch().val_accuracy is not None
    sys.modules.pop("custom_model", None)


def test_the_workers_device_reaches_a_built_in_trial(
    master: Master, monkeypatch: pytest.MonkeyPatch
) -> None:
    devices: list[str] = []

    def recording(*args: Any, device: str = "cpu", **kwargs: Any) -> Any:
        devices.append(device)
        return make_trainer(*args, **kwargs)  # on the CPU: this machine has no GPU

    monkeypatch.setattr(loop, "make_trainer", recording)
    study = master.service.create_study(
        tiny_spec(model="torch.mlp", stages=[{"trials": 1, "epochs": 1}])
    )
    assert run_worker(master.url, master.store_root, "t1", device="cuda") == 1
    assert devices == ["cuda"]
    assert master.service.progress(study.id).state == "completed"


def test_the_worker_trains_on_a_gpu_only_when_torch_can_use_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gridless.worker.loop import worker_device

    assert worker_device([]) == ("cpu", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    device, note = worker_device(["0", "1"])
    assert device == "cpu"
    assert note is not None
    assert note.startswith("Ray gave this worker GPU 0,1, but torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert worker_device(["0"]) == ("cuda", None)
