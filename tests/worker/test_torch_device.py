"""Torch models on the trial's device (issue 16): the device reaches the trainer, which
keeps its model and data there. This machine has no GPU: the tests train on the CPU.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from gridless.worker import loop, torch_trainer
from gridless.worker.data import load_dataset
from gridless.worker.loop import run_worker
from gridless.worker.numpy_trainer import NumpyTrainer
from gridless.worker.torch_trainer import TorchTrainer
from gridless.worker.trainer import make_trainer
from tests.conftest import Master, tiny_spec

pytestmark = pytest.mark.torch

EXAMPLES = Path(__file__).parents[2] / "examples"


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
