"""NumPy and Torch trainers: accuracy on digits, every option trains, checkpoints resume;
regression (loss mse) on a generated linear problem."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gridless.worker.data import load_dataset
from gridless.worker.trainer import (
    HYPERPARAMS,
    EpochMetrics,
    Trainer,
    check_params,
    make_trainer,
    resolve_hyperparams,
)
from tests.worker.datasets import write_linear_regression

EXAMPLES = Path(__file__).parents[2] / "examples"
# MSE gradients grow with the targets' scale (variance ~8 here): lr 0.1 diverges
REGRESSION: dict[str, object] = {"loss": "mse", "learning_rate": 0.01}
REGRESSION_METRICS = {"train_rmse", "train_r2", "val_rmse", "val_r2"}


def train(
    model: str, epochs: int, *, dataset: object = "digits", **params: object
) -> list[EpochMetrics]:
    trainer = make_trainer(model, dataset, params, seed=0)  # type: ignore[arg-type]
    return [trainer.train_epoch() for _ in range(epochs)]


@pytest.fixture
def linear(tmp_path: Path) -> dict[str, str]:
    """y = x @ w + noise with one target."""
    return {"npz": str(write_linear_regression(tmp_path / "linear.npz"))}


def test_numpy_mlp_defaults_reach_97_percent_and_torch_lands_within_a_point() -> None:
    numpy_best = max(m.val_accuracy for m in train("numpy.mlp", 20))
    torch_best = max(m.val_accuracy for m in train("torch.mlp", 20))
    assert numpy_best >= 0.97
    assert abs(torch_best - numpy_best) <= 0.01


@pytest.mark.parametrize("library", ["numpy", "torch"])
@pytest.mark.parametrize(
    ("update", "lr"),
    [
        ("sgd", 0.3),
        ("momentum", 0.05),
        ("nesterov", 0.05),
        ("adagrad", 0.05),
        ("rmsprop", 3e-3),
        ("adam", 1e-2),
        ("lbfgs", 1.0),
    ],
)
def test_every_update_rule_learns(library: str, update: str, lr: float) -> None:
    metrics = train(f"{library}.mlp", 3, update=update, learning_rate=lr)
    assert metrics[-1].val_accuracy > 0.85, (update, metrics[-1])
    assert metrics[-1].train_loss < metrics[0].stats["loss_history"][0]


@pytest.mark.parametrize("library", ["numpy", "torch"])
@pytest.mark.parametrize(
    "options",
    [
        {"layers": 3, "batchnorm": True},
        {"dropout": 0.5},
        {"loss": "svm", "learning_rate": 0.01},
        {"init": "xavier", "schedule": "step", "lr_step": 1},
        {"schedule": "plateau", "momentum": 0.5, "momentum_final": 0.99, "momentum_epochs": 2},
    ],
    ids=["deep-batchnorm", "dropout", "svm", "xavier-step", "plateau-momentum-schedule"],
)
def test_options_train(library: str, options: dict) -> None:  # type: ignore[type-arg]
    metrics = train(f"{library}.mlp", 3, **options)
    assert metrics[-1].val_accuracy > 0.85, metrics[-1]
    assert not any(m.diverged for m in metrics)


def test_step_schedule_lowers_the_learning_rate_each_step() -> None:
    metrics = train("numpy.mlp", 3, schedule="step", lr_step=1, lr_decay=0.5)
    assert [m.stats["learning_rate"] for m in metrics] == [0.1, 0.05, 0.025]


@pytest.mark.parametrize("library", ["numpy", "torch"])
def test_convnet_learns_digits_images(library: str) -> None:
    metrics = train(f"{library}.convnet", 2, learning_rate=0.05, filters=8, hidden=64)
    assert metrics[-1].val_accuracy > 0.85


@pytest.mark.parametrize("library", ["numpy", "torch"])
def test_running_average_of_weights_is_evaluated_every_epoch(library: str) -> None:
    metrics = train(f"{library}.mlp", 4, ema=0.99)
    for m in metrics:
        assert 0.0 <= m.stats["ema_val_accuracy"] <= 1.0
    assert metrics[-1].stats["ema_val_accuracy"] > 0.9


@pytest.mark.parametrize("library", ["numpy", "torch"])
def test_babysitting_statistics_are_reported(library: str) -> None:
    (m,) = train(f"{library}.mlp", 1, layers=2)
    assert len(m.stats["loss_history"]) == int(np.ceil(1257 / HYPERPARAMS["batch_size"]))
    assert len(m.stats["update_ratio"]) == 6  # W and b of three affine layers
    assert [layer["layer"] for layer in m.stats["layers"]] == [1.0, 2.0]
    assert all({"act_mean", "act_std", "grad_std"} <= set(layer) for layer in m.stats["layers"])
    assert m.metrics == {}  # classification reports its accuracies, nothing extra


@pytest.mark.parametrize("library", ["numpy", "torch"])
def test_huge_learning_rate_diverges_without_crashing(library: str) -> None:
    metrics = train(f"{library}.mlp", 2, learning_rate=1e4, update="sgd")
    assert metrics[0].diverged


def roundtrip(trainer: Trainer, tmp_path: Path) -> Path:
    path = tmp_path / f"ck.{trainer.checkpoint_suffix}"
    with path.open("wb") as handle:
        trainer.write_checkpoint(handle, {"note": "x"})
    return path


@pytest.mark.parametrize("model", ["numpy.mlp", "torch.mlp", "numpy.convnet", "torch.convnet"])
def test_checkpoint_resume_continues_identically(model: str, tmp_path: Path) -> None:
    params = (
        {"dropout": 0.2, "ema": 0.9, "schedule": "step", "lr_step": 1} if "mlp" in model else {}
    )
    a = make_trainer(model, "digits", params, seed=1)
    a.train_epoch()
    path = roundtrip(a, tmp_path)
    b = make_trainer(model, "digits", params, seed=1)
    b.train_epoch()  # a different state, replaced by the checkpoint
    assert b.load_checkpoint(path) == {"note": "x"}
    assert a.train_epoch().train_loss == pytest.approx(
        b.train_epoch().train_loss, rel=1e-5
    ) or model.startswith("torch")


def test_torch_checkpoints_load_with_weights_only(tmp_path: Path) -> None:
    trainer = make_trainer(
        "torch.mlp",
        "digits",
        {"update": "adam", "learning_rate": 1e-3, "schedule": "plateau"},
        seed=0,
    )
    trainer.train_epoch()
    state = torch.load(roundtrip(trainer, tmp_path), weights_only=True)
    assert set(state) == {"model", "optimizer", "scheduler", "ema", "epoch", "meta"}
    assert state["epoch"] == 1


def test_numpy_checkpoints_hold_no_pickles(tmp_path: Path) -> None:
    trainer = make_trainer("numpy.mlp", "digits", {"update": "adam"}, seed=0)
    trainer.train_epoch()
    with np.load(roundtrip(trainer, tmp_path), allow_pickle=False) as data:
        assert "param/W1" in data.files
        assert "optim/W1/m" in data.files


def test_custom_model_factory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    trainer = make_trainer("custom_model:build", "digits", {"learning_rate": 0.5}, seed=0)
    assert trainer.train_epoch().val_accuracy > 0.8
    sys.modules.pop("custom_model", None)


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("no_such_module:build", r"model 'no_such_module:build': cannot import 'no_such_module'"),
        (
            "json:no_such_factory",
            r"model 'json:no_such_factory': json has no callable 'no_such_factory'",
        ),
        (
            "json:dumps",
            r"model 'json:dumps': calling the factory failed \(dumps\(\) takes 1 positional argument but 3 were given\)",
        ),
        ("os:getcwd", r"model 'os:getcwd': calling the factory failed"),
        ("builtins:slice", r"model 'builtins:slice': the factory did not return a Trainer"),
    ],
)
def test_bad_custom_models_say_what_is_wrong(model: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_trainer(model, "digits", {}, seed=0)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"schedule": "cosine"},
            "unknown schedule 'cosine'; valid: exponential, inverse_time, none, plateau, step",
        ),
        ({"init": "zeros"}, "unknown init 'zeros'; valid: he, naive, xavier"),
        ({"loss": "hinge"}, "unknown loss 'hinge'; valid: mse, softmax, svm"),
        (
            {"update": "adamw"},
            "unknown update rule 'adamw'; valid: adagrad, adam, lbfgs, momentum, nesterov, rmsprop, sgd",
        ),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\), but got 1.0"),
    ],
)
def test_bad_hyperparameters_list_valid_values(params: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValueError, match=message):
        make_trainer("numpy.mlp", "digits", params, seed=0)


def test_unknown_model_and_hyperparameter_names() -> None:
    with pytest.raises(
        ValueError,
        match=r"unknown model 'numpy.cnn'; valid: numpy.convnet, numpy.mlp, torch.convnet, torch.mlp, package.module:factory",
    ):
        check_params("numpy.cnn", set())
    with pytest.raises(
        ValueError,
        match=r"model 'numpy.mlp' has no hyperparameter 'lr'; valid: batch_size, batchnorm",
    ):
        check_params("numpy.mlp", {"lr"})
    from gridless.worker.data import _split
    from gridless.worker.numpy_trainer import NumpyTrainer

    flat = _split("x.npz", np.zeros((20, 3)), np.arange(20) % 2)
    with pytest.raises(ValueError, match=r"convnet needs image data; x.npz has flat features"):
        NumpyTrainer(flat, {}, seed=0, kind="convnet")


def test_io_is_binary_safe() -> None:
    trainer = make_trainer("numpy.mlp", "digits", {}, seed=0)
    buffer = io.BytesIO()
    trainer.write_checkpoint(buffer, {"a": 1})
    assert buffer.getvalue()[:2] == b"PK"  # a zip (npz) archive


@pytest.mark.parametrize("k", [1, 3])
def test_mse_mlp_fits_a_linear_problem_and_torch_lands_close(tmp_path: Path, k: int) -> None:
    dataset = {"npz": str(write_linear_regression(tmp_path / "linear.npz", k=k))}
    numpy_run = train("numpy.mlp", 5, dataset=dataset, **REGRESSION)
    torch_run = train("torch.mlp", 5, dataset=dataset, **REGRESSION)
    numpy_r2, torch_r2 = numpy_run[-1].metrics["val_r2"], torch_run[-1].metrics["val_r2"]
    assert numpy_r2 > 0.9, [m.metrics for m in numpy_run]
    assert torch_r2 > 0.9, [m.metrics for m in torch_run]
    assert abs(numpy_r2 - torch_r2) <= 0.05
    data = load_dataset(dataset)
    chance = float(data.y_train.var(axis=0).mean())
    val_variance = float(data.y_val.var(axis=0).mean())
    for m, rel in [*((m, 1e-9) for m in numpy_run), *((m, 1e-4) for m in torch_run)]:
        assert (m.train_accuracy, m.val_accuracy, m.diverged) == (None, None, False)
        assert set(m.metrics) == REGRESSION_METRICS
        # val_loss is the MSE data loss: RMSE is its root, R² = 1 - MSE / variance
        assert m.metrics["val_rmse"] ** 2 == pytest.approx(m.val_loss, rel=rel)
        assert m.metrics["val_r2"] == pytest.approx(1 - m.val_loss / val_variance, rel=rel)
        assert m.stats["chance_loss"] == pytest.approx(chance)
        assert "num_classes" not in m.stats
    assert numpy_run[0].stats["initial_data_loss"] > 0


@pytest.mark.parametrize("k", [1, 2])
def test_torch_mse_twin_matches_numpy_in_float64(tmp_path: Path, k: int) -> None:
    from torch import nn

    from gridless.worker.diagnostics.torch_target import TorchTarget
    from gridless.worker.numpy_trainer import build_numpy_model
    from gridless.worker.torch_trainer import build_torch_model

    data = load_dataset({"npz": str(write_linear_regression(tmp_path / "t.npz", n=50, k=k))})
    hp = resolve_hyperparams({"loss": "mse", "hidden": 7, "layers": 2, "reg": 0.1})
    numpy_net = build_numpy_model("mlp", data, hp, np.random.default_rng(0))
    torch_net = build_torch_model("mlp", data, hp).double()
    linears = [m for m in torch_net.modules() if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for i, layer in enumerate(linears, start=1):
            layer.weight.copy_(torch.as_tensor(numpy_net.params[f"W{i}"].T))
            layer.bias.copy_(torch.as_tensor(numpy_net.params[f"b{i}"] + 0.1 * i))
            numpy_net.params[f"b{i}"] += 0.1 * i  # away from zero biases: no exact kinks
    x, y = data.x_train[:9], data.y_train[:9]
    loss, grads = numpy_net.loss(x, y)
    target = TorchTarget(torch_net, x, y, reg=0.1, loss="mse")
    torch_loss, torch_grads = target.loss(data=True, reg=True)
    assert torch_loss == pytest.approx(loss, rel=1e-12)
    names = [name for name, _ in torch_net.named_parameters()]
    for i in range(1, len(linears) + 1):
        weight, bias = names[2 * i - 2], names[2 * i - 1]
        np.testing.assert_allclose(torch_grads[weight].T, grads[f"W{i}"], rtol=1e-10)
        np.testing.assert_allclose(torch_grads[bias], grads[f"b{i}"], rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("library", ["numpy", "torch"])
@pytest.mark.parametrize(
    "options",
    [
        {"schedule": "plateau", "lr_patience": 1},
        {"ema": 0.9},
        {"layers": 2, "batchnorm": True, "dropout": 0.1},
        {"update": "lbfgs", "learning_rate": 1.0},
    ],
    ids=["plateau", "ema", "deep-batchnorm-dropout", "lbfgs"],
)
def test_regression_options_train(
    library: str, options: dict[str, object], linear: dict[str, str]
) -> None:
    metrics = train(f"{library}.mlp", 2, dataset=linear, **{**REGRESSION, **options})
    assert not any(m.diverged for m in metrics), metrics[-1]
    assert metrics[-1].metrics["val_r2"] > 0.5, metrics[-1].metrics
    if "ema" in options:
        assert all(-10 < m.stats["ema_val_r2"] <= 1 for m in metrics)
        assert all("ema_val_accuracy" not in m.stats for m in metrics)


@pytest.mark.parametrize("library", ["numpy", "torch"])
def test_convnets_train_on_npz_images_with_labels_or_float_targets(
    library: str, tmp_path: Path
) -> None:
    images = np.random.default_rng(0).random((60, 1, 4, 4))
    brightness = images.mean(axis=(1, 2, 3))
    np.savez(tmp_path / "labels.npz", x=images, y=(brightness > np.median(brightness)) * 1)
    np.savez(tmp_path / "targets.npz", x=images, y=10 * brightness)
    model, small = f"{library}.convnet", {"filters": 2, "hidden": 8}
    (labels,) = train(model, 1, dataset={"npz": str(tmp_path / "labels.npz")}, **small)
    assert labels.val_accuracy is not None
    assert labels.metrics == {}
    (targets,) = train(model, 1, dataset={"npz": str(tmp_path / "targets.npz")}, **REGRESSION)
    assert targets.val_accuracy is None
    assert set(targets.metrics) == REGRESSION_METRICS
    assert np.isfinite(targets.val_loss)


@pytest.mark.parametrize("library", ["numpy", "torch"])
@pytest.mark.parametrize(
    ("dataset", "loss", "message"),
    [
        (
            "digits",
            "mse",
            r"loss 'mse' needs float targets \(regression\), but digits has integer class "
            r"labels \(10 classes\): use loss softmax or svm, or save 'y' as floats",
        ),
        (
            "linear",
            "softmax",
            r"loss 'softmax' needs integer class labels, but linear.npz has float targets "
            r"\(k=1\): use loss mse for regression, or save 'y' as integers",
        ),
        ("linear", "svm", r"loss 'svm' needs integer class labels, but linear.npz has float"),
    ],
)
def test_a_loss_that_does_not_fit_the_targets_is_refused(
    library: str, dataset: str, loss: str, message: str, linear: dict[str, str]
) -> None:
    spec = linear if dataset == "linear" else dataset
    for kind in ("mlp", "convnet") if dataset == "digits" else ("mlp",):
        with pytest.raises(ValueError, match=message):
            make_trainer(f"{library}.{kind}", spec, {"loss": loss}, seed=0)


@pytest.mark.parametrize("library", ["numpy", "torch"])
def test_a_regression_model_has_no_class_probabilities(
    library: str, linear: dict[str, str]
) -> None:
    trainer = make_trainer(f"{library}.mlp", linear, REGRESSION, seed=0)
    with pytest.raises(ValueError, match=r"a regression model \(loss mse\) has no class"):
        trainer.predict_proba(np.zeros((2, 8)))  # type: ignore[attr-defined]


@pytest.mark.torch
def test_torch_batchnorm_skips_a_last_batch_of_one() -> None:
    """1257 training digits in batches of 8 leave one example: batch norm cannot
    normalize it, so the epoch skips it instead of failing the trial."""
    trainer = make_trainer("torch.mlp", "digits", {"batchnorm": True, "batch_size": 8}, seed=0)
    assert trainer.data.x_train.shape[0] % 8 == 1  # type: ignore[attr-defined]
    m = trainer.train_epoch()
    assert not m.diverged
    assert len(m.stats["loss_history"]) == 1257 // 8
