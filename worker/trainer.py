"""Trainers: turn one trial's hyperparameters into epochs of training and metrics.

A trainer follows a small protocol (`Trainer`, documented in docs/trainers.md):
`train_epoch()` returns an `EpochMetrics`, `write_checkpoint(handle, meta)` saves its
state to an open binary file, `load_checkpoint(path)` restores it. The worker loop
drives it and never needs to know which library trains the model. NumPy and Torch
trainers share the hyperparameter names in `HYPERPARAMS` (worker/training.py, which
both import instead of this module).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from gridless.worker.data import Dataset, load_dataset
from gridless.worker.training import HYPERPARAMS, EpochMetrics, Trainer, resolve_hyperparams

__all__ = [
    "DEVICE_MODELS",
    "HYPERPARAMS",
    "MODELS",
    "CodeNotFound",
    "DeviceTrainerFactory",
    "EpochMetrics",
    "Trainer",
    "check_params",
    "custom_factory",
    "make_trainer",
    "resolve_hyperparams",
]

TrainerFactory = Callable[[Dataset, Mapping[str, Any], int], Trainer]


class DeviceTrainerFactory(Protocol):
    """A factory that also takes the device to train on; with the default, a plain
    `TrainerFactory`."""

    def __call__(
        self, data: Dataset, params: Mapping[str, Any], seed: int, *, device: str = "cpu"
    ) -> Trainer: ...


def _numpy(kind: str) -> TrainerFactory:
    def factory(data: Dataset, params: Mapping[str, Any], seed: int) -> Trainer:
        from gridless.worker.numpy_trainer import NumpyTrainer

        return NumpyTrainer(data, params, seed=seed, kind=kind)

    return factory


def _torch(kind: str) -> DeviceTrainerFactory:
    def factory(
        data: Dataset, params: Mapping[str, Any], seed: int, *, device: str = "cpu"
    ) -> Trainer:
        try:
            from gridless.worker.torch_trainer import TorchTrainer
        except ImportError as exc:  # torch is an optional extra
            raise ValueError(
                "model 'torch.*' needs PyTorch: pip install 'gridless[torch]'"
            ) from exc
        return TorchTrainer(data, params, seed=seed, kind=kind, device=device)

    return factory


# The built-in models that train on the trial's device. NumPy models are CPU
# models, and a custom factory keeps its (data, params, seed) signature.
DEVICE_MODELS: dict[str, DeviceTrainerFactory] = {
    "torch.mlp": _torch("mlp"),
    "torch.convnet": _torch("convnet"),
}

MODELS: dict[str, TrainerFactory] = {
    "numpy.mlp": _numpy("mlp"),
    "numpy.convnet": _numpy("convnet"),
    **DEVICE_MODELS,
}


class CodeNotFound(ValueError):
    """The user's code a spec names does not import here, or names nothing callable: the
    worker's environment is wrong, not the trial (the master pauses the study)."""


def custom_factory(model: str) -> TrainerFactory:
    """The trainer factory a spec's `model: "package.module:factory"` names, imported here.

    Raises:
        CodeNotFound: when the module does not import or has no such callable.
    """
    module_name, _, attr = model.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CodeNotFound(f"model {model!r}: cannot import {module_name!r} ({exc})") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise CodeNotFound(f"model {model!r}: {module_name} has no callable {attr!r}")
    return factory  # type: ignore[no-any-return]


def check_params(model: str, names: set[str]) -> None:
    """Refuse a model name or hyperparameter names the model does not know.

    Custom models (`package.module:factory`) accept any names: their factory validates.

    Raises:
        ValueError: listing the valid names.
    """
    if ":" in model:
        return
    if model not in MODELS:
        valid = ", ".join([*sorted(MODELS), "package.module:factory"])
        raise ValueError(f"unknown model {model!r}; valid: {valid}")
    unknown = sorted(names - set(HYPERPARAMS))
    if unknown:
        valid = ", ".join(sorted(HYPERPARAMS))
        raise ValueError(f"model {model!r} has no hyperparameter {unknown[0]!r}; valid: {valid}")


def make_trainer(
    model: str,
    dataset: str | Mapping[str, str],
    params: Mapping[str, Any],
    *,
    seed: int,
    device: str = "cpu",
) -> Trainer:
    """Build the trainer a study names, on its data set.

    Args:
        device: the trial's device (`"cpu"`, `"cuda"`), where the models of
            `DEVICE_MODELS` train; NumPy and custom models do not take one.
    """
    check_params(model, set(params))
    factory = custom_factory(model) if ":" in model else MODELS[model]
    try:
        data = load_dataset(dataset)
        if model in DEVICE_MODELS:
            trainer = DEVICE_MODELS[model](data, params, seed, device=device)
        else:
            trainer = factory(data, params, seed)
    except TypeError as exc:
        raise ValueError(
            f"model {model!r}: calling the factory failed ({exc}); "
            "it must accept (data, params, seed) and return a Trainer"
        ) from None
    if not isinstance(trainer, Trainer):
        raise ValueError(f"model {model!r}: the factory did not return a Trainer (see docs)")
    return trainer
