"""Every NumPy layer and loss against float64 centered differences.

Thresholds from the seed's gradient-check section: below 1e-7 where the function is smooth, below 1e-5 where kinks
(ReLU, max, SVM margins) are involved. Inputs are kept away from kinks by construction so
that a failure means a wrong gradient, not a crossed kink.
"""

from __future__ import annotations

import numpy as np
import pytest

from gridless.worker.layers import (
    affine_backward,
    affine_forward,
    batchnorm_backward,
    batchnorm_forward,
    conv_backward,
    conv_forward,
    dropout_backward,
    dropout_forward,
    max_pool_backward,
    max_pool_forward,
    mse_loss,
    relu_backward,
    relu_forward,
    softmax_loss,
    svm_loss,
)
from gridless.worker.models import ConvNet, FullyConnectedNet
from tests.worker.numeric import check_layer, numeric_gradient, rel_error

SMOOTH, KINKY = 1e-7, 1e-5


def characteristic(net: object, rng: np.random.Generator) -> None:
    """Random biases: zero biases put dead examples' pre-activations exactly on the ReLU
    kink (the seed: check "during a characteristic mode of operation")."""
    for name, value in net.params.items():  # type: ignore[attr-defined]
        if name.startswith("b"):
            value[...] = 0.1 * rng.standard_normal(value.shape)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def test_affine(rng: np.random.Generator) -> None:
    x, w, b = rng.standard_normal((4, 5)), rng.standard_normal((5, 3)), rng.standard_normal(3)
    dout = rng.standard_normal((4, 3))
    dx, dw, db = affine_backward(dout, affine_forward(x, w, b)[1])
    errors = check_layer(
        lambda: affine_forward(x, w, b)[0],
        {"x": dx, "w": dw, "b": db},
        {"x": x, "w": w, "b": b},
        dout,
    )
    assert max(errors.values()) < SMOOTH, errors


def test_relu_away_from_the_kink(rng: np.random.Generator) -> None:
    x = rng.standard_normal((3, 4))
    x[np.abs(x) < 0.1] = 0.5
    dout = rng.standard_normal((3, 4))
    dx = relu_backward(dout, relu_forward(x)[1])
    assert check_layer(lambda: relu_forward(x)[0], {"x": dx}, {"x": x}, dout)["x"] < KINKY


@pytest.mark.parametrize("p", [0.0, 0.3, 0.75])
def test_seeded_dropout(rng: np.random.Generator, p: float) -> None:
    x, dout = rng.standard_normal((5, 6)), rng.standard_normal((5, 6))

    def forward() -> np.ndarray:
        return dropout_forward(x, p, train=True, rng=np.random.default_rng(42))[0]

    _, cache = dropout_forward(x, p, train=True, rng=np.random.default_rng(42))
    dx = dropout_backward(dout, cache)
    assert check_layer(forward, {"x": dx}, {"x": x}, dout)["x"] < SMOOTH


def test_inverted_dropout_keeps_the_expectation_and_is_identity_at_test_time(
    rng: np.random.Generator,
) -> None:
    x = np.ones((2000, 50))
    out, _ = dropout_forward(x, 0.4, train=True, rng=rng)
    assert out.mean() == pytest.approx(1.0, abs=0.01)
    assert np.mean(out == 0) == pytest.approx(0.4, abs=0.01)
    assert dropout_forward(x, 0.4, train=False, rng=None)[0] is x


@pytest.mark.parametrize("train", [True, False])
def test_batchnorm(rng: np.random.Generator, train: bool) -> None:
    x = 3 * rng.standard_normal((6, 4)) + 2
    gamma, beta = rng.standard_normal(4), rng.standard_normal(4)
    dout = rng.standard_normal((6, 4))
    running = {"mean": rng.standard_normal(4), "var": rng.random(4) + 0.5}

    def forward() -> np.ndarray:
        return batchnorm_forward(x, gamma, beta, dict(running), train=train)[0]

    _, cache = batchnorm_forward(x, gamma, beta, dict(running), train=train)
    dx, dgamma, dbeta = batchnorm_backward(dout, cache)
    errors = check_layer(
        forward,
        {"x": dx, "gamma": dgamma, "beta": dbeta},
        {"x": x, "gamma": gamma, "beta": beta},
        dout,
    )
    assert max(errors.values()) < SMOOTH, errors


def test_batchnorm_normalizes_in_training_and_tracks_running_stats(
    rng: np.random.Generator,
) -> None:
    x = 5 * rng.standard_normal((200, 3)) + 7
    running = {"mean": np.zeros(3), "var": np.ones(3)}
    out, _ = batchnorm_forward(x, np.ones(3), np.zeros(3), running, train=True, momentum=0.0)
    np.testing.assert_allclose(out.mean(axis=0), 0, atol=1e-10)
    np.testing.assert_allclose(out.std(axis=0), 1, atol=1e-3)
    np.testing.assert_allclose(running["mean"], x.mean(axis=0))


def test_conv(rng: np.random.Generator) -> None:
    x, w, b = (
        rng.standard_normal((2, 3, 5, 5)),
        rng.standard_normal((4, 3, 3, 3)),
        rng.standard_normal(4),
    )
    dout = rng.standard_normal((2, 4, 5, 5))
    dx, dw, db = conv_backward(dout, conv_forward(x, w, b, pad=1)[1])
    errors = check_layer(
        lambda: conv_forward(x, w, b, pad=1)[0],
        {"x": dx, "w": dw, "b": db},
        {"x": x, "w": w, "b": b},
        dout,
    )
    assert max(errors.values()) < SMOOTH, errors


def test_conv_matches_a_direct_loop(rng: np.random.Generator) -> None:
    x, w, b = (
        rng.standard_normal((1, 2, 4, 4)),
        rng.standard_normal((3, 2, 3, 3)),
        rng.standard_normal(3),
    )
    out, _ = conv_forward(x, w, b, pad=1, stride=1)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    direct = np.array(
        [
            [
                [np.sum(xp[0, :, i : i + 3, j : j + 3] * w[f]) + b[f] for j in range(4)]
                for i in range(4)
            ]
            for f in range(3)
        ]
    )
    np.testing.assert_allclose(out[0], direct)


def test_max_pool_with_distinct_values(rng: np.random.Generator) -> None:
    x = rng.permutation(2 * 3 * 4 * 4).reshape(2, 3, 4, 4).astype(np.float64) / 10  # no ties
    dout = rng.standard_normal((2, 3, 2, 2))
    dx = max_pool_backward(dout, max_pool_forward(x)[1])
    assert check_layer(lambda: max_pool_forward(x)[0], {"x": dx}, {"x": x}, dout)["x"] < KINKY


@pytest.mark.parametrize(
    ("loss", "threshold"), [(softmax_loss, SMOOTH), (svm_loss, KINKY), (mse_loss, SMOOTH)]
)
def test_losses(rng: np.random.Generator, loss: object, threshold: float) -> None:
    scores = rng.standard_normal((7, 5))
    # class labels (N,), or for the mean squared error float targets (N, k)
    y = rng.standard_normal((7, 5)) if loss is mse_loss else rng.integers(5, size=7)
    value, dscores = loss(scores, y)  # type: ignore[operator]
    numeric = numeric_gradient(lambda: loss(scores, y)[0], scores)  # type: ignore[operator]
    assert rel_error(dscores, numeric) < threshold
    assert value > 0


def test_losses_at_chance_match_the_seed(rng: np.random.Generator) -> None:
    scores, y = 1e-6 * rng.standard_normal((100, 10)), rng.integers(10, size=100)
    assert softmax_loss(scores, y)[0] == pytest.approx(np.log(10), abs=1e-4)  # 2.302
    assert svm_loss(scores, y)[0] == pytest.approx(9.0, abs=1e-4)  # C - 1


def test_mse_of_predicting_the_mean_is_the_variance(rng: np.random.Generator) -> None:
    y = 3.0 + 2.0 * rng.standard_normal((50, 3))
    mean = np.broadcast_to(y.mean(axis=0), y.shape)
    assert mse_loss(mean, y)[0] == pytest.approx(float(y.var(axis=0).mean()), rel=1e-12)
    value, dpred = mse_loss(y, y)
    assert value == 0.0
    np.testing.assert_array_equal(dpred, 0.0)


@pytest.mark.parametrize(
    "options",
    [
        {"hidden_dims": [7]},
        {"hidden_dims": [6, 5], "loss": "svm"},
        {"hidden_dims": [6, 5], "loss": "mse"},
        {"hidden_dims": [6, 5], "batchnorm": True},
        {"hidden_dims": [6, 5], "dropout": 0.3},
        {"hidden_dims": [5, 5, 5], "init": "xavier", "batchnorm": True, "dropout": 0.2},
    ],
)
def test_fully_connected_net_every_parameter(rng: np.random.Generator, options: dict) -> None:  # type: ignore[type-arg]
    x = rng.standard_normal((4, 6))
    y = rng.standard_normal((4, 3)) if options.get("loss") == "mse" else rng.integers(3, size=4)
    net = FullyConnectedNet(6, num_classes=3, reg=0.1, rng=rng, **options)
    characteristic(net, rng)
    _, grads = net.loss(x, y, seed=7)
    assert set(grads) == set(net.params)
    limit = KINKY if options.get("loss") == "svm" or len(options["hidden_dims"]) > 2 else 1e-6
    for name, param in net.params.items():  # biases and batch-norm parameters included
        err = rel_error(grads[name], numeric_gradient(lambda: net.loss(x, y, seed=7)[0], param))
        assert err < limit, (name, err)


def test_conv_net_every_parameter(rng: np.random.Generator) -> None:
    x, y = rng.standard_normal((2, 1 * 4 * 4)), rng.integers(3, size=2)
    net = ConvNet((1, 4, 4), 3, filters=2, hidden=5, reg=0.05, rng=rng)
    characteristic(net, rng)
    _, grads = net.loss(x, y)
    for name, param in net.params.items():
        err = rel_error(grads[name], numeric_gradient(lambda: net.loss(x, y)[0], param))
        assert err < KINKY, (name, err)


def test_dropout_without_a_seed_is_refused_in_training(rng: np.random.Generator) -> None:
    net = FullyConnectedNet(4, [3], 2, reg=0.0, rng=rng, dropout=0.5)
    with pytest.raises(ValueError, match="needs a seed"):
        net.loss(np.zeros((2, 4)), np.zeros(2, dtype=int))
