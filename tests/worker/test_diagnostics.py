"""Babysitting: plant each bug the seed warns about and see it caught."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gridless.common.spec import load_spec
from gridless.worker.data import load_dataset
from gridless.worker.diagnostics.babysit import activation_variances, epoch_warnings
from gridless.worker.diagnostics.gradcheck import (
    NumpyTarget,
    gradient_check,
    relative_error,
    verdict,
)
from gridless.worker.diagnostics.preflight import (
    GRADIENT_CHECK,
    OVERFIT_ACCURACY,
    center_params,
    preflight,
)
from gridless.worker.diagnostics.sanity import (
    CHANCE_CHECK,
    OVERFIT_CHECK,
    REG_CHECK,
    chance_loss_check,
    overfit_check,
    reg_check,
)
from gridless.worker.models import FullyConnectedNet
from gridless.worker.trainer import MODELS, EpochMetrics, make_trainer
from tests.worker.datasets import write_linear_regression

EXAMPLES = Path(__file__).parents[2] / "examples"


def digits_points(n: int = 3) -> tuple[np.ndarray, np.ndarray]:
    data = load_dataset("digits")
    return data.x_train[:n], data.y_train[:n]


class WrongLayer(FullyConnectedNet):
    """W2's gradient is 5 % too large: a bug in one layer."""

    def loss(self, x: np.ndarray, y: np.ndarray, **kw: Any) -> tuple[float, dict[str, np.ndarray]]:
        value, grads = super().loss(x, y, **kw)
        grads["W2"] = grads["W2"] * 1.05
        return value, grads


class WrongBias(FullyConnectedNet):
    """b1's gradient is doubled: biases are a sliver of all parameters."""

    def loss(self, x: np.ndarray, y: np.ndarray, **kw: Any) -> tuple[float, dict[str, np.ndarray]]:
        value, grads = super().loss(x, y, **kw)
        grads["b1"] = grads["b1"] * 2.0
        return value, grads


def net(cls: type[FullyConnectedNet] = FullyConnectedNet, **kw: Any) -> FullyConnectedNet:
    options = {"reg": 1e-3, "rng": np.random.default_rng(0), **kw}
    model = cls(64, [100, 100], 10, **options)
    for name, value in model.params.items():  # characteristic mode: no exact kinks at 0
        if name.startswith("b"):
            value[...] = 0.01 * np.random.default_rng(1).standard_normal(value.shape)
    return model


@pytest.mark.parametrize(
    ("a", "n", "error"),
    [(0.0, 0.0, 0.0), (1.0, 1.0, 0.0), (1.0, 0.5, 0.5), (-1.0, 1.0, 2.0), (1e-12, 0.0, 0.0)],
)
def test_relative_error_is_the_seeds_formula(a: float, n: float, error: float) -> None:
    assert relative_error(a, n) == pytest.approx(error)


@pytest.mark.parametrize(
    ("error", "kinks", "band"),
    [
        (0.5, True, "probably wrong"),
        (1e-3, True, "uncomfortable"),
        (1e-5, True, "ok (kinks)"),
        (1e-5, False, "too high without kinks"),
        (1e-8, False, "good"),
    ],
)
def test_verdict_bands(error: float, kinks: bool, band: str) -> None:
    assert verdict(error, kinks=kinks) == band


def test_correct_net_passes_every_parameter_in_both_phases() -> None:
    x, y = digits_points()
    report = gradient_check(NumpyTarget(net(), x, y))
    assert report.passed, [r.to_json() for r in report.failures()]
    assert {(r.name, r.phase) for r in report.rows} == {
        (name, phase)
        for name in ("W1", "b1", "W2", "b2", "W3", "b3")
        for phase in ("data", "regularization")
    }


def test_a_wrong_gradient_in_one_layer_is_caught_there() -> None:
    x, y = digits_points()
    report = gradient_check(NumpyTarget(net(WrongLayer), x, y))
    failed = {(r.name, r.phase) for r in report.failures()}
    assert failed == {("W2", "data")}
    row = next(r for r in report.rows if r.name == "W2" and r.phase == "data")
    assert row.verdict in ("probably wrong", "uncomfortable")


def test_a_bias_bug_is_caught_per_parameter_but_missed_by_a_flat_sample() -> None:
    x, y = digits_points()
    model = net(WrongBias)
    report = gradient_check(NumpyTarget(model, x, y))
    assert {r.name for r in report.failures()} == {"b1"}
    # The same budget (5 dims per array x 6 arrays) drawn from one flat vector of all
    # parameters: b1 is 100 of 17,710 entries, so the sample holds none of it.
    sizes = {k: v.size for k, v in model.params.items()}
    offsets = np.cumsum([0, *sizes.values()])
    flat = np.random.default_rng(0).choice(offsets[-1], size=30, replace=False)
    b1 = list(sizes).index("b1")
    assert not np.any((flat >= offsets[b1]) & (flat < offsets[b1 + 1]))


def test_dropout_without_a_fixed_seed_fails_and_passes_once_seeded() -> None:
    x, y = digits_points()
    unseeded = gradient_check(NumpyTarget(net(dropout=0.5), x, y, fixed_seed=False))
    seeded = gradient_check(NumpyTarget(net(dropout=0.5), x, y, fixed_seed=True))
    assert not unseeded.passed
    assert any(r.verdict == "probably wrong" for r in unseeded.rows)
    assert seeded.passed, [r.to_json() for r in seeded.failures()]


def test_kinks_crossed_are_reported_not_judged() -> None:
    x, y = digits_points()
    model = net(loss="svm")
    report = gradient_check(NumpyTarget(model, x, y), steps=(1e-1,))
    assert sum(r.kinks_crossed for r in report.rows) > 0


def test_naive_init_vanishes_like_the_seeds_table_and_he_does_not() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1000, 500))
    y = rng.integers(10, size=1000)
    naive = activation_variances(
        FullyConnectedNet(500, [500] * 8, 10, reg=0.0, rng=rng, init="naive"), x, y
    )
    he = activation_variances(
        FullyConnectedNet(500, [500] * 8, 10, reg=0.0, rng=rng, init="he"), x, y
    )
    # The seed: "Layer 0: 1.0e+00 ... Layer 8: 6.6e-25" with std 0.01; here each ReLU layer
    # scales the variance by 500 * 1e-4 / 2 = 0.025.
    assert all(b < 0.05 * a for a, b in itertools.pairwise(naive))
    assert naive[-1] < 1e-10 * naive[0]
    assert max(he) / min(he) < 10


def trial_warnings(dataset: Any = "digits", **params: Any) -> set[str]:
    trainer = make_trainer("numpy.mlp", dataset, params, seed=0)
    history, codes = [], set()
    for _ in range(2):
        history.append(trainer.train_epoch())
        m = history[-1]
        codes |= {
            w.code
            for w in epoch_warnings(
                history,
                num_classes=m.stats.get("num_classes"),
                chance_loss=m.stats.get("chance_loss"),
            )
        }
        if m.diverged:
            break
    return codes


def test_vanishing_warning_for_naive_deep_net_and_none_with_he() -> None:
    assert "vanishing_activations" in trial_warnings(layers=8, init="naive")
    assert "vanishing_activations" not in trial_warnings(layers=8, init="he")


@pytest.mark.parametrize(
    ("params", "expected", "absent"),
    [
        ({"learning_rate": 10.0}, {"diverged"}, set()),
        ({"learning_rate": 1e-7}, {"lr_too_low", "not_learning"}, {"diverged"}),
        ({"learning_rate": 3.0, "update": "sgd"}, {"lr_too_high"}, {"lr_too_low"}),
        (
            {"learning_rate": 0.1},
            set(),
            {"lr_too_low", "lr_too_high", "diverged", "not_learning", "vanishing_activations"},
        ),
        # a large L2 penalty makes the first *total* loss huge; the data loss is at chance
        ({"reg": 10.0, "learning_rate": 1e-7}, set(), {"initial_loss_far_from_chance"}),
        (
            {"init": "naive", "layers": 1, "loss": "svm", "learning_rate": 1e-7},
            set(),
            {"initial_loss_far_from_chance"},
        ),
    ],
)
def test_learning_rate_warnings(
    params: dict[str, Any], expected: set[str], absent: set[str]
) -> None:
    codes = trial_warnings(**params)
    assert expected <= codes
    assert not (absent & codes)


def test_initial_loss_far_from_chance_is_flagged() -> None:
    trainer = make_trainer("numpy.mlp", "digits", {"learning_rate": 1e-7}, seed=0)
    trainer.model.params["W2"] *= 50  # type: ignore[attr-defined]  # scores far from zero
    m = trainer.train_epoch()
    codes = {w.code for w in epoch_warnings([m], num_classes=10, chance_loss=np.log(10))}
    assert "initial_loss_far_from_chance" in codes


def test_overfitting_is_flagged() -> None:
    m = EpochMetrics(0.01, 1.0, 1.5, 0.7, 0.1, False, {"loss_history": [2.0, 0.01]})
    assert [w.code for w in epoch_warnings([m], num_classes=10, chance_loss=None)] == [
        "overfitting"
    ]


def test_sanity_checks_pass_on_a_correct_net_and_catch_bad_ones() -> None:
    x, y = digits_points()
    target = NumpyTarget(net(), x, y)
    assert chance_loss_check(target, num_classes=10, loss="softmax").passed
    assert chance_loss_check(NumpyTarget(net(loss="svm"), x, y), num_classes=10, loss="svm").passed
    assert reg_check(target).passed
    target.reg = 0.0
    assert reg_check(target).passed  # the check sets its own strengths and restores them
    assert target.reg == 0.0
    # A loss implementation off by a constant factor misses chance.
    assert not chance_loss_check(target, num_classes=10, loss="svm").passed


def test_overfit_check_passes_and_fails() -> None:
    data = load_dataset("digits")
    good = overfit_check(MODELS["numpy.mlp"], data, {"reg": 0.0})
    assert good.passed, good.detail
    frozen = overfit_check(
        MODELS["numpy.mlp"], data, {"reg": 0.0, "learning_rate": 1e-9}, max_epochs=20
    )
    assert not frozen.passed
    assert "after 20 epochs" in frozen.detail


@pytest.mark.parametrize("spec", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_preflight_passes_on_every_shipped_example(
    spec: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    study = load_spec(EXAMPLES / spec)
    report = preflight(study.model, study.dataset, study.space, study.fixed)
    assert report.passed, (
        report.gradcheck and [r.to_json() for r in report.gradcheck.failures()],
        report.sanity,
    )


def test_center_params_use_the_sampling_scale() -> None:
    params = center_params(
        {
            "learning_rate": {"log_uniform": [1e-6, 1e-2]},
            "hidden": {"int_log_uniform": [10, 1000]},
            "dropout": {"uniform": [0.0, 0.5]},
            "update": {"choice": ["adam", "sgd"]},
        },
        {"batch_size": 32},
    )
    assert params == {
        "learning_rate": pytest.approx(1e-4),
        "hidden": 100,
        "dropout": 0.25,
        "update": "adam",
        "batch_size": 32,
    }


def test_center_params_leave_out_a_parameter_whose_condition_fails() -> None:
    space = {
        "update": {"choice": ["adam", "sgd"]},
        "momentum": {"uniform": [0.5, 0.9], "when": {"update": "sgd"}},
        "beta2": {"uniform": [0.9, 0.99], "when": {"update": "adam"}},
    }
    assert center_params(space, {}) == {"update": "adam", "beta2": pytest.approx(0.945)}


@pytest.fixture
def linear(tmp_path: Path) -> dict[str, str]:
    return {"npz": str(write_linear_regression(tmp_path / "linear.npz"))}


def regression_epoch(train_r2: float, val_r2: float, losses: list[float]) -> EpochMetrics:
    metrics = {"train_rmse": 1.0, "train_r2": train_r2, "val_rmse": 1.0, "val_r2": val_r2}
    return EpochMetrics(1.0, None, 1.0, None, 0.1, False, {"loss_history": losses}, metrics)


@pytest.mark.parametrize(
    ("epoch", "codes"),
    [
        (regression_epoch(0.99, 0.6, [2.0, 0.01]), ["overfitting"]),
        (regression_epoch(0.03, 0.02, [1.0, 1.0]), ["not_learning"]),  # R² 0: the mean
        (regression_epoch(0.9, 0.85, [2.0, 0.1]), []),
        # a custom trainer may report neither accuracies nor R²: those rules are skipped
        (EpochMetrics(1.0, None, 1.0, None, 0.1, False, {"loss_history": [1.0, 1.0]}), []),
    ],
    ids=["overfitting", "not-learning", "fine", "no-scores"],
)
def test_regression_epochs_are_judged_on_r2(epoch: EpochMetrics, codes: list[str]) -> None:
    found = epoch_warnings([epoch], num_classes=None, chance_loss=None)
    assert [w.code for w in found] == codes
    assert all("R²" in w.message for w in found)


def test_regression_trials_warn_like_classification_ones(linear: dict[str, str]) -> None:
    good = trial_warnings(linear, loss="mse", learning_rate=0.01)
    assert not good & {"initial_loss_far_from_chance", "not_learning", "overfitting"}, good
    # (not_learning needs a flat loss; 14 noisy minibatch MSEs of this problem are not
    # flat enough to judge, so it is left to test_regression_epochs_are_judged_on_r2)
    assert "lr_too_low" in trial_warnings(linear, loss="mse", learning_rate=1e-7)


def test_chance_loss_of_a_regression_is_the_targets_variance(linear: dict[str, str]) -> None:
    data = load_dataset(linear)
    x, y = data.x_train[:3], 5.0 + data.y_train[:3]  # an offset the output bias must absorb
    model = FullyConnectedNet(8, [100, 100], 1, reg=1e-3, rng=np.random.default_rng(0), loss="mse")
    target = NumpyTarget(model, x, y)
    result = chance_loss_check(target, num_classes=0, loss="mse", targets=y)
    assert result.passed, result.detail
    assert f"expected {y.var():.4f} (the targets' variance" in result.detail
    np.testing.assert_array_equal(model.params["b3"], 0.0)  # restored after the check
    assert not chance_loss_check(target, num_classes=0, loss="mse", targets=2 * y).passed
    with pytest.raises(ValueError, match="pass targets"):
        chance_loss_check(target, num_classes=0, loss="mse")


def test_regression_overfit_check_aims_at_zero_loss_whatever_the_scale(tmp_path: Path) -> None:
    path = write_linear_regression(tmp_path / "big.npz")
    with np.load(path) as raw:
        np.savez(path, x=raw["x"], y=1000.0 * raw["y"] + 5000.0)  # prices, not N(0, 1)
    data = load_dataset({"npz": str(path)})
    good = overfit_check(
        MODELS["numpy.mlp"], data, {"loss": "mse", "reg": 0.0, "learning_rate": 0.01}
    )
    assert good.passed, good.detail
    assert good.detail.endswith("below 0.01 on standardized targets (variance 1)")
    frozen = overfit_check(
        MODELS["numpy.mlp"], data, {"loss": "mse", "reg": 0.0, "learning_rate": 1e-9}, max_epochs=5
    )
    assert not frozen.passed
    assert frozen.detail.startswith("after 5 epochs: loss ")


@pytest.mark.parametrize("model", ["numpy.mlp", "torch.mlp"])
def test_preflight_of_a_regression_says_what_ran_and_what_was_skipped(
    model: str, linear: dict[str, str]
) -> None:
    space = {"learning_rate": {"log_uniform": [1e-4, 1e-2]}}
    report = preflight(model, linear, space, {"loss": "mse"})
    assert report.passed, (
        report.gradcheck and [r.to_json() for r in report.gradcheck.failures()],
        report.sanity,
    )
    assert report.ran == [GRADIENT_CHECK, CHANCE_CHECK, REG_CHECK, OVERFIT_CHECK]
    assert list(report.skipped) == [OVERFIT_ACCURACY]
    assert report.notes == [
        "skipped 100% training accuracy of the overfit check: regression targets have no "
        "classes; the overfit check aims at a near-zero loss"
    ]


def test_preflight_of_a_custom_model_skips_what_needs_built_in_parameters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    space = {"learning_rate": {"log_uniform": [0.1, 1.0]}}
    report = preflight("custom_model:build", "digits", space, {})
    assert report.ran == [OVERFIT_CHECK]
    assert list(report.skipped) == [GRADIENT_CHECK, CHANCE_CHECK, REG_CHECK]
    assert all(note.startswith("skipped ") for note in report.notes)
    classification = preflight("numpy.mlp", "digits", space, {})
    assert (classification.skipped, classification.notes) == ({}, [])
    assert classification.ran == [GRADIENT_CHECK, CHANCE_CHECK, REG_CHECK, OVERFIT_CHECK]


def test_preflight_refuses_a_loss_that_does_not_fit(linear: dict[str, str]) -> None:
    with pytest.raises(ValueError, match=r"loss 'softmax' needs integer class labels"):
        preflight("numpy.mlp", linear, {"reg": {"log_uniform": [1e-5, 1e-3]}}, {})
