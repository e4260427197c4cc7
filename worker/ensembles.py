"""Model ensembles from a finished study, evaluated on the held-out test split (the
seed's "Evaluation: Model Ensembles").

Every choice here (which trials are the top K, which configuration is the best) comes
from validation scores the study already recorded; the test split is only predicted on,
to report. An ensemble averages its members' predicted class probabilities (or, for a
regression model of the user's, its outputs).

Kinds:
- `top_k`: the best checkpoints of the study's top K trials;
- `seeds`: the best configuration retrained with K seeds;
- `epochs`: the checkpoints of one retrained model across its last K epochs (for a user's
  model: the best trial's last K kept checkpoints);
- `ema`: the running average of one retrained model's weights (a single model).

Built-in models get every kind (`evaluate_ensembles`); a `train:` function's models get
`top_k` and `epochs` through the spec's `predict:` and `evaluate:` hooks
(`evaluate_user_ensembles`), which need no retraining.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gridless.common.metric import Metric
from gridless.worker.data import Dataset, load_dataset
from gridless.worker.trainer import make_trainer
from gridless.worker.trial import load_state

__all__ = [
    "EnsembleReport",
    "ScoredModel",
    "TopTrial",
    "accuracy",
    "average_probabilities",
    "evaluate_ensembles",
    "evaluate_user_ensembles",
]

EMA_DECAY = 0.99


@dataclass(frozen=True)
class TopTrial:
    """A trial chosen by validation score: its parameters and its best checkpoint."""

    number: int
    params: Mapping[str, Any]
    checkpoint: Path
    epochs: int


@dataclass(frozen=True)
class ScoredModel:
    """One model or ensemble, with its accuracies and gain over the best single model."""

    kind: str  # single | top_k | seeds | epochs | ema
    name: str
    members: int
    val_score: float  # the report's metric on the validation split
    test_score: float
    val_gain: float = 0.0  # over the best single model
    test_gain: float = 0.0
    metrics: Mapping[str, Mapping[str, float]] = field(default_factory=dict)  # split -> all

    def to_json(self, metric: str = "accuracy") -> dict[str, Any]:
        row = dict(vars(self))
        row["metrics"] = {split: dict(values) for split, values in self.metrics.items()}
        if metric == "accuracy":  # the built-ins' field names, as before named metrics
            row["val_accuracy"], row["test_accuracy"] = self.val_score, self.test_score
        return row


@dataclass
class EnsembleReport:
    """Every row, best single model first; `metric` names what the scores are."""

    rows: list[ScoredModel] = field(default_factory=list)
    test_examples: int = 0
    val_examples: int = 0
    notes: list[str] = field(default_factory=list)
    metric: str = "accuracy"
    maximize: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": [r.to_json(self.metric) for r in self.rows],
            "test_examples": self.test_examples,
            "val_examples": self.val_examples,
            "notes": self.notes,
            "metric": self.metric,
            "maximize": self.maximize,
        }

    def with_gains(self) -> EnsembleReport:
        """The rows with their gains over the first row (the best single model)."""
        base = self.rows[0]
        self.rows = [
            ScoredModel(
                r.kind,
                r.name,
                r.members,
                r.val_score,
                r.test_score,
                r.val_score - base.val_score,
                r.test_score - base.test_score,
                r.metrics,
            )
            for r in self.rows
        ]
        return self


def average_probabilities(probabilities: Sequence[np.ndarray]) -> np.ndarray:
    """The mean of several (N, C) probability arrays.

    Raises:
        ValueError: for no members or members of different shapes.
    """
    if not probabilities:
        raise ValueError("an ensemble needs at least one member")
    shapes = {p.shape for p in probabilities}
    if len(shapes) != 1:
        raise ValueError(f"members disagree on shape: {sorted(shapes)}")
    return np.asarray(np.mean(np.stack(probabilities), axis=0))


def accuracy(probabilities: np.ndarray, y: np.ndarray) -> float:
    """Share of examples whose most probable class is the label."""
    return float(np.mean(np.argmax(probabilities, axis=1) == y))


@dataclass
class _Member:
    name: str
    val: np.ndarray
    test: np.ndarray


def _probs(trainer: Any, data: Dataset, *, ema: bool = False) -> tuple[np.ndarray, np.ndarray]:
    if not hasattr(trainer, "predict_proba"):
        raise ValueError("ensembles need a built-in model (numpy.* or torch.*) with predict_proba")
    return trainer.predict_proba(data.x_val, ema=ema), trainer.predict_proba(data.x_test, ema=ema)


def _row(kind: str, name: str, members: Sequence[_Member], data: Dataset) -> ScoredModel:
    val = average_probabilities([m.val for m in members])
    test = average_probabilities([m.test for m in members])
    return ScoredModel(
        kind, name, len(members), accuracy(val, data.y_val), accuracy(test, data.y_test)
    )


def evaluate_ensembles(
    *,
    model: str,
    dataset: str | Mapping[str, str],
    fixed: Mapping[str, Any],
    top: Sequence[TopTrial],
    k: int = 5,
    seed: int = 0,
    retrain: bool = True,
    device: str = "cpu",
) -> EnsembleReport:
    """Build and evaluate every ensemble kind from a study's top trials (best first);
    a Torch model predicts and retrains on `device`.

    Raises:
        ValueError: with no top trial, or for a custom model.
    """
    if not top:
        raise ValueError("the study has no scored trial with a checkpoint")
    if ":" in model:
        raise ValueError("ensembles need a built-in model (numpy.* or torch.*)")
    data = load_dataset(dataset)
    singles: list[_Member] = []
    for trial in top[:k]:
        trainer = make_trainer(model, dataset, {**fixed, **trial.params}, seed=seed, device=device)
        trainer.load_checkpoint(trial.checkpoint)
        singles.append(_Member(f"trial {trial.number}", *_probs(trainer, data)))
    report = EnsembleReport(test_examples=len(data.y_test), val_examples=len(data.y_val))
    rows = [_row("single", f"best single model (trial {top[0].number})", singles[:1], data)]
    rows += [_row("single", m.name, [m], data) for m in singles[1:]]
    rows.append(_row("top_k", f"top {len(singles)} trials", singles, data))
    if retrain:
        best = top[0]
        params = {**fixed, **best.params, "ema": EMA_DECAY}
        seeds: list[_Member] = []
        snapshots: list[_Member] = []
        ema: _Member | None = None
        for s in range(k):
            trainer = make_trainer(model, dataset, params, seed=seed + 1000 + s, device=device)
            for epoch in range(1, best.epochs + 1):
                trainer.train_epoch()
                if s == 0 and epoch > best.epochs - k:
                    snapshots.append(_Member(f"epoch {epoch}", *_probs(trainer, data)))
            seeds.append(_Member(f"seed {s}", *_probs(trainer, data)))
            if s == 0:
                ema = _Member("ema", *_probs(trainer, data, ema=True))
        rows.append(_row("seeds", f"best configuration, {k} seeds", seeds, data))
        rows.append(_row("epochs", f"one model, last {len(snapshots)} epochs", snapshots, data))
        assert ema is not None
        rows.append(_row("ema", "running average of the weights", [ema], data))
        rows.append(_row("single", "best configuration retrained (seed 0)", seeds[:1], data))
    report.rows = rows
    report.notes.append(
        "members are chosen by validation score; the test split is only predicted on"
    )
    return report.with_gains()


# -- a train: function's models ------------------------------------------------

Predict = Callable[[dict[str, Any], dict[str, Any], str], Any]
Evaluate = Callable[[np.ndarray, str], Mapping[str, Any]]


def _outputs(predict: Predict, path: Path, params: Mapping[str, Any], split: str) -> np.ndarray:
    """The user's predictions for `split` from the checkpoint at `path`."""
    try:
        out = predict(load_state(path), dict(params), split)
        if hasattr(out, "detach"):  # a Torch tensor
            out = out.detach().cpu().numpy()
        array = np.asarray(out, dtype=np.float64)
    except Exception as exc:  # the user's hook may raise anything
        raise ValueError(
            f"predict({path.name}, split={split!r}) failed: {exc.__class__.__name__}: {exc}"
        ) from None
    if array.ndim not in (1, 2) or len(array) == 0 or not np.isfinite(array).all():
        raise ValueError(
            f"predict(split={split!r}) must return finite (N, C) probabilities or (N,) / (N, k) "
            f"outputs, but returned shape {array.shape}"
        )
    return array


def _scored(evaluate: Evaluate, outputs: np.ndarray, split: str, name: str) -> dict[str, float]:
    try:
        raw = evaluate(outputs, split)
        values = {str(k): float(v) for k, v in dict(raw).items()}
    except Exception as exc:  # the user's hook may raise anything
        raise ValueError(
            f"evaluate(split={split!r}) failed: {exc.__class__.__name__}: {exc}"
        ) from None
    if name not in values or not math.isfinite(values[name]):
        raise ValueError(
            f"evaluate(split={split!r}) must return a finite {name!r} (the study's metric "
            f"without its val_ prefix), but returned {sorted(values)}"
        )
    return values


def evaluate_user_ensembles(
    *,
    predict: Predict,
    evaluate: Evaluate,
    metric: Metric,
    top: Sequence[TopTrial],
    epoch_checkpoints: Sequence[tuple[int, Path]] = (),
    k: int = 5,
) -> EnsembleReport:
    """The top-K and checkpoint ensembles of a `train:` function's models.

    `predict(state, params, split)` gives each member's outputs on "val" and "test" (class
    probabilities, or regression outputs), which are averaged; `evaluate(outputs, split)`
    scores them (`metric`'s name without `val_`). `epoch_checkpoints` are the best trial's
    kept checkpoints as (epoch, path), oldest first.

    Raises:
        ValueError: with no top trial, or when a hook fails or returns what it must not.
    """
    if not top:
        raise ValueError("the study has no scored trial with a checkpoint")
    name = metric.name.removeprefix("val_")

    def member(label: str, path: Path, params: Mapping[str, Any]) -> _Member:
        return _Member(
            label, _outputs(predict, path, params, "val"), _outputs(predict, path, params, "test")
        )

    def row(kind: str, label: str, members: Sequence[_Member]) -> ScoredModel:
        val = average_probabilities([m.val for m in members])
        test = average_probabilities([m.test for m in members])
        scores = {
            "val": _scored(evaluate, val, "val", name),
            "test": _scored(evaluate, test, "test", name),
        }
        return ScoredModel(
            kind, label, len(members), scores["val"][name], scores["test"][name], metrics=scores
        )

    singles = [member(f"trial {t.number}", t.checkpoint, t.params) for t in top[:k]]
    rows = [row("single", f"best single model (trial {top[0].number})", singles[:1])]
    rows += [row("single", m.name, [m]) for m in singles[1:]]
    rows.append(row("top_k", f"top {len(singles)} trials", singles))
    last = list(epoch_checkpoints)[-k:]
    report = EnsembleReport(
        test_examples=len(singles[0].test),
        val_examples=len(singles[0].val),
        metric=name,
        maximize=metric.maximize,
    )
    if len(last) > 1:  # retention keeps each trial's best and latest, at least
        snapshots = [member(f"epoch {e}", path, top[0].params) for e, path in last]
        rows.append(
            row("epochs", f"trial {top[0].number}, its last {len(last)} kept epochs", snapshots)
        )
    report.notes += [
        "members are chosen by validation score; the test split is only predicted on",
        "a function's models are not retrained: no K-seeds or running-average rows",
    ]
    if len(last) <= 1:
        report.notes.append(
            f"trial {top[0].number} keeps one checkpoint: no ensemble of its epochs"
        )
    report.rows = rows
    return report.with_gains()
