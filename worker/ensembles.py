"""Model ensembles from a finished study, evaluated on the held-out test split (the
seed's "Evaluation: Model Ensembles").

Every choice here (which trials are the top K, which configuration is the best) comes
from validation scores the study already recorded; the test split is only predicted on,
to report. An ensemble averages its members' predicted class probabilities.

Kinds:
- `top_k`: the best checkpoints of the study's top K trials;
- `seeds`: the best configuration retrained with K seeds;
- `epochs`: the checkpoints of one retrained model across its last K epochs;
- `ema`: the running average of one retrained model's weights (a single model).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gridless.worker.data import Dataset, load_dataset
from gridless.worker.trainer import make_trainer

__all__ = [
    "EnsembleReport",
    "EnsembleRow",
    "TopTrial",
    "accuracy",
    "average_probabilities",
    "evaluate_ensembles",
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
class EnsembleRow:
    """One model or ensemble, with its accuracies and gain over the best single model."""

    kind: str  # single | top_k | seeds | epochs | ema
    name: str
    members: int
    val_accuracy: float
    test_accuracy: float
    val_gain: float = 0.0
    test_gain: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass
class EnsembleReport:
    """Every row, best single model first."""

    rows: list[EnsembleRow] = field(default_factory=list)
    test_examples: int = 0
    val_examples: int = 0
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": [r.to_json() for r in self.rows],
            "test_examples": self.test_examples,
            "val_examples": self.val_examples,
            "notes": self.notes,
        }


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


def _row(kind: str, name: str, members: Sequence[_Member], data: Dataset) -> EnsembleRow:
    val = average_probabilities([m.val for m in members])
    test = average_probabilities([m.test for m in members])
    return EnsembleRow(
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
) -> EnsembleReport:
    """Build and evaluate every ensemble kind from a study's top trials (best first).

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
        trainer = make_trainer(model, dataset, {**fixed, **trial.params}, seed=seed)
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
            trainer = make_trainer(model, dataset, params, seed=seed + 1000 + s)
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
    base = rows[0]
    report.rows = [
        EnsembleRow(
            r.kind,
            r.name,
            r.members,
            r.val_accuracy,
            r.test_accuracy,
            r.val_accuracy - base.val_accuracy,
            r.test_accuracy - base.test_accuracy,
        )
        for r in rows
    ]
    report.notes.append(
        "members are chosen by validation score; the test split is only predicted on"
    )
    return report
