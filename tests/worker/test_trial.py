"""`gridless.Trial` alone (a plain run, no master) and its checkpoint format."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import gridless
from gridless.common.checkpoints import parse_name
from gridless.worker.trial import load_state, state_writer


def test_the_public_surface_is_exactly_this() -> None:
    """What users import (STYLE.md: a test lists the public names, like httpx's)."""
    assert sorted(gridless.__all__) == ["Metric", "Trial", "TrialStopped", "load_state"]
    for name in gridless.__all__:
        assert getattr(gridless, name).__module__.startswith("gridless.")


def test_a_plain_run_iterates_its_epochs_and_prints_its_reports(
    capsys: pytest.CaptureFixture[str],
) -> None:
    trial = gridless.Trial({"lr": 0.1}, max_epochs=3, metric="val_r2")
    seen = []
    for epoch in trial.epochs():
        trial.report(epoch, val_loss=1.0 / epoch, val_r2=-0.5 + epoch / 4)
        seen.append(epoch)
    assert seen == [1, 2, 3]
    assert trial.params == {"lr": 0.1}
    assert trial.max_epochs == 3
    assert trial.device == "cpu"
    assert trial.restore() is None
    assert "epoch 3  val_loss 0.3333  val_r2 0.25" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("metrics", "error", "match"),
    [
        ({"val_acc": "high"}, TypeError, "val_acc must be a number, but got str"),
        ({"val_acc": None}, TypeError, "val_acc must be a number, but got None"),
        ({"val_acc": True}, TypeError, "val_acc must be a number"),
        ({"epoch": 0.5}, ValueError, "'epoch' is a reserved report field"),
        ({"9x": 0.5}, ValueError, "a metric name is a letter"),
        ({}, ValueError, "needs at least one metric"),
    ],
)
def test_bad_reports_say_what_is_wrong(
    metrics: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        gridless.Trial().report(1, **metrics)


def test_an_epoch_is_reported_once() -> None:
    trial = gridless.Trial(max_epochs=2)
    trial.report(1, val_loss=0.5)
    with pytest.raises(ValueError, match="epoch 1 was reported already"):
        trial.report(1, val_accuracy=0.5)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_non_finite_loss_or_objective_is_divergence(value: float) -> None:
    trial = gridless.Trial(max_epochs=5, metric="val_r2")
    with pytest.raises(gridless.TrialStopped) as stop:
        trial.report(1, val_r2=value)
    assert stop.value.state == "diverged"
    with pytest.raises(gridless.TrialStopped, match="train_loss is"):
        gridless.Trial().report(1, train_loss=value)


def test_a_non_finite_side_metric_is_not_divergence() -> None:
    gridless.Trial(metric="val_r2").report(1, val_r2=0.3, grad_norm=math.inf)


def test_numbers_of_any_kind_are_accepted() -> None:
    torch = pytest.importorskip("torch")
    trial = gridless.Trial(max_epochs=1)
    trial.report(1, a=np.float32(0.5), b=np.int64(3), c=torch.tensor(0.25), d=7)
    assert trial.reported[1] == {"a": 0.5, "b": 3.0, "c": 0.25, "d": 7.0}


def test_a_plain_run_writes_score_named_checkpoints(tmp_path: Path) -> None:
    trial = gridless.Trial(max_epochs=2, metric="val_r2", checkpoint_dir=tmp_path)
    for epoch in trial.epochs():
        trial.report(epoch, val_r2=-0.25 * epoch)
        trial.save({"w": np.full(3, float(epoch)), "opt": {"step": epoch}})
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["r2_-0000.2500_ep001.npz", "r2_-0000.5000_ep002.npz"]
    assert parse_name(names[1]).score == -0.5
    state = load_state(tmp_path / names[1])
    assert state["opt"] == {"step": 2}
    np.testing.assert_array_equal(state["w"], np.full(3, 2.0))


def test_a_save_before_the_report_is_written_with_it(tmp_path: Path) -> None:
    trial = gridless.Trial(max_epochs=1, metric="val_loss", checkpoint_dir=tmp_path)
    for epoch in trial.epochs():
        weights = np.zeros(2)
        assert trial.save({"w": weights}) is None  # held: the score is not known yet
        weights += 5  # the caller goes on changing its arrays
        trial.report(epoch, val_loss=0.25)
    (name,) = [p.name for p in tmp_path.iterdir()]
    assert name == "loss0000.2500_ep001.npz"
    np.testing.assert_array_equal(load_state(tmp_path / name)["w"], np.zeros(2))


def test_torch_state_dicts_load_with_weights_only(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    suffix, writer = state_writer(
        {"model": model.state_dict(), "optimizer": optimizer.state_dict()}, {"epoch": 1}
    )
    assert suffix == "pt"
    path = tmp_path / f"x.{suffix}"
    with path.open("wb") as handle:
        writer(handle)
    raw = torch.load(path, weights_only=True)  # what the docs tell users to run
    assert set(raw) == {"state", "meta"}
    state = load_state(path)
    torch.testing.assert_close(state["model"]["weight"], model.weight.detach())
    assert state["optimizer"]["state"][0]["step"] == optimizer.state_dict()["state"][0]["step"]


@pytest.mark.parametrize(
    ("state", "match"),
    [
        ([1, 2], "state must be a dict"),
        ({"model": object()}, "an .npz holds arrays and numbers"),
        ({"../x": 1.0}, "keys must be plain strings"),
    ],
)
def test_unsavable_states_are_refused(state: object, match: str) -> None:
    with pytest.raises(TypeError, match=match):
        state_writer(state, {})  # type: ignore[arg-type]


def test_max_epochs_must_be_a_positive_integer() -> None:
    with pytest.raises(ValueError, match="max_epochs must be an integer >= 1"):
        gridless.Trial(max_epochs=0)


def test_a_plain_run_resumes_from_its_own_newest_checkpoint(tmp_path: Path) -> None:
    first = gridless.Trial(max_epochs=2, metric="val_r2", checkpoint_dir=tmp_path)
    for epoch in first.epochs():
        first.report(epoch, val_r2=0.1 * epoch)
        first.save({"w": np.full(2, float(epoch))})
    again = gridless.Trial(max_epochs=5, metric="val_r2", checkpoint_dir=tmp_path)
    state = again.restore()
    assert state is not None
    np.testing.assert_array_equal(state["w"], np.full(2, 2.0))
    assert list(again.epochs()) == [3, 4, 5]


def test_a_plain_run_without_checkpoints_starts_over(tmp_path: Path) -> None:
    trial = gridless.Trial(max_epochs=2, checkpoint_dir=tmp_path / "none-yet")
    assert trial.restore() is None
    assert list(trial.epochs()) == [1, 2]


def test_report_writes_its_checkpoint_in_the_same_call(tmp_path: Path) -> None:
    trial = gridless.Trial(max_epochs=2, metric="val_loss", checkpoint_dir=tmp_path)
    for epoch in trial.epochs():
        trial.report(epoch, checkpoint={"w": np.full(2, float(epoch))}, val_loss=1.0 / epoch)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["loss0000.5000_ep002.npz", "loss0001.0000_ep001.npz"]
    assert trial.saved_epochs == {1, 2}
    assert load_state(tmp_path / names[0])["w"].tolist() == [2.0, 2.0]


def test_a_bad_checkpoint_in_report_records_nothing_of_the_epoch() -> None:
    trial = gridless.Trial(max_epochs=2)
    with pytest.raises(TypeError, match=r"an \.npz holds arrays and numbers"):
        trial.report(1, checkpoint={"model": object()}, val_loss=0.5)
    assert trial.reported == {}


def test_a_nan_objective_of_finite_losses_is_no_divergence(
    capsys: pytest.CaptureFixture[str],
) -> None:
    trial = gridless.Trial(max_epochs=2, metric="val_f1")
    trial.report(1, train_loss=0.4, val_loss=0.5, val_f1=math.nan)  # no TrialStopped
    assert "val_f1 is nan at epoch 1 while the losses are finite" in capsys.readouterr().err
    with pytest.raises(gridless.TrialStopped, match="val_loss is nan"):
        trial.report(2, train_loss=0.4, val_loss=math.nan, val_f1=0.5)
