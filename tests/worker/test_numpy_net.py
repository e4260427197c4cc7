"""The NumPy net: analytic gradients against centered differences (float64), and training."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from worker.data import load_dataset
from worker.layers import (
    affine_backward,
    affine_forward,
    relu_backward,
    relu_forward,
    softmax_loss,
)
from worker.models import FullyConnectedNet
from worker.trainer import check_params, make_trainer


def numeric_gradient(f: Callable[[], float], x: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """Centered differences of scalar f() with respect to every entry of x (in place)."""
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + h
        plus = f()
        x[i] = old - h
        minus = f()
        x[i] = old
        grad[i] = (plus - minus) / (2 * h)
    return grad


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b) / np.maximum(1e-12, np.abs(a) + np.abs(b))))


def test_affine_backward_matches_numeric() -> None:
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((4, 5)), rng.standard_normal((5, 3)), rng.standard_normal(3)
    dout = rng.standard_normal((4, 3))
    _, cache = affine_forward(x, w, b)
    dx, dw, db = affine_backward(dout, cache)
    assert (
        rel_error(
            dx, numeric_gradient(lambda: float(np.sum(affine_forward(x, w, b)[0] * dout)), x)
        )
        < 1e-7
    )
    assert (
        rel_error(
            dw, numeric_gradient(lambda: float(np.sum(affine_forward(x, w, b)[0] * dout)), w)
        )
        < 1e-7
    )
    assert (
        rel_error(
            db, numeric_gradient(lambda: float(np.sum(affine_forward(x, w, b)[0] * dout)), b)
        )
        < 1e-7
    )


def test_relu_backward_matches_numeric_away_from_the_kink() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4))
    x[np.abs(x) < 0.1] = 0.5  # stay clear of the kink at 0
    dout = rng.standard_normal((3, 4))
    _, cache = relu_forward(x)
    num = numeric_gradient(lambda: float(np.sum(relu_forward(x)[0] * dout)), x)
    assert rel_error(relu_backward(dout, cache), num) < 1e-7


def test_softmax_loss_gradient_and_chance_loss() -> None:
    rng = np.random.default_rng(2)
    scores, y = 1e-3 * rng.standard_normal((50, 10)), rng.integers(10, size=50)
    loss, dscores = softmax_loss(scores, y)
    assert loss == pytest.approx(np.log(10), rel=1e-2)  # the seed's 2.302 at chance
    num = numeric_gradient(lambda: softmax_loss(scores, y)[0], scores)
    assert rel_error(dscores, num) < 1e-6


@pytest.mark.parametrize("hidden", [[7], [6, 5]])
def test_net_gradient_check_every_parameter(hidden: list[int]) -> None:
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((4, 6)), rng.integers(3, size=4)
    net = FullyConnectedNet(6, hidden, 3, reg=0.1, rng=rng)
    _, grads = net.loss(x, y)
    for name, param in net.params.items():  # biases included
        num = numeric_gradient(lambda: net.loss(x, y)[0], param)
        assert rel_error(grads[name], num) < 1e-6, name


def test_digits_split_is_fixed_disjoint_and_mean_subtracted_on_train_only() -> None:
    data = load_dataset("digits")
    assert (data.x_train.shape[1], data.num_classes) == (64, 10)
    sizes = (len(data.y_train), len(data.y_val), len(data.y_test))
    assert sizes == (1257, 270, 270)
    np.testing.assert_allclose(data.x_train.mean(axis=0), 0.0, atol=1e-12)
    assert not np.allclose(data.x_val.mean(axis=0), 0.0, atol=1e-3)


def test_npz_dataset_errors_name_the_file(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "bad.npz"
    np.savez(path, x=np.zeros((20, 3, 2)), y=np.zeros(20, dtype=np.int64))
    with pytest.raises(ValueError, match=r"bad.npz: expected 'x' of shape \(N, D\)"):
        load_dataset({"npz": str(path)})
    np.savez(path, x=np.zeros((20, 3)), y=np.zeros(20))
    with pytest.raises(
        ValueError, match=r"bad.npz: expected numeric 'x' and integer 'y', got float64 and float64"
    ):
        load_dataset({"npz": str(path)})
    with pytest.raises(ValueError, match="unknown dataset 'cifar'; valid: digits"):
        load_dataset("cifar")


def test_mlp_reaches_95_percent_on_digits() -> None:
    trainer = make_trainer("numpy.mlp", "digits", {"learning_rate": 0.3, "reg": 1e-3}, seed=0)
    metrics = [trainer.train_epoch() for _ in range(10)]
    assert metrics[-1].val_accuracy >= 0.95
    assert metrics[-1].train_loss < metrics[0].train_loss


def test_huge_learning_rate_diverges_without_crashing() -> None:
    trainer = make_trainer("numpy.mlp", "digits", {"learning_rate": 1e4}, seed=0)
    assert any(trainer.train_epoch().diverged for _ in range(3))


def test_unknown_model_and_hyperparameter_list_valid_names() -> None:
    with pytest.raises(ValueError, match=r"unknown model 'numpy.cnn'; valid: numpy.mlp"):
        check_params("numpy.cnn", set())
    with pytest.raises(
        ValueError,
        match=r"model 'numpy.mlp' has no hyperparameter 'lr'; valid: batch_size, hidden",
    ):
        check_params("numpy.mlp", {"lr"})
    with pytest.raises(ValueError, match=r"unknown update rule 'adamw'; valid: momentum, sgd"):
        make_trainer("numpy.mlp", "digits", {"update": "adamw"}, seed=0)


def test_state_arrays_round_trip_resumes_identically() -> None:
    a = make_trainer("numpy.mlp", "digits", {"learning_rate": 0.1}, seed=5)
    a.train_epoch()
    b = make_trainer("numpy.mlp", "digits", {"learning_rate": 0.1}, seed=6)
    b.load_state_arrays(a.state_arrays())
    for key, value in a.state_arrays().items():
        np.testing.assert_array_equal(b.state_arrays()[key], value)
