"""The metric's direction, in its one home: every comparison a study makes."""

from __future__ import annotations

import pytest
from sqlalchemy import column, func, select

from gridless.common.metric import Metric

MAX = Metric.of("val_accuracy", maximize=True)
MIN = Metric.of("val_loss", maximize=False)


def test_of_round_trips_the_stored_flag() -> None:
    assert (MAX.mode, MIN.mode) == ("max", "min")
    assert (MAX.maximize, MIN.maximize) == (True, False)
    assert (MAX.direction, MIN.direction) == ("maximize", "minimize")


@pytest.mark.parametrize(
    ("metric", "score", "than", "better", "reached"),
    [
        (MAX, 0.9, 0.8, True, True),
        (MAX, 0.8, 0.9, False, False),
        (MAX, 0.8, 0.8, False, True),  # a tie is not better, but reaches a target
        (MIN, 0.8, 0.9, True, True),
        (MIN, 0.9, 0.8, False, False),
        (MIN, 0.8, 0.8, False, True),
        (MAX, -1.0, -2.0, True, True),  # an R² may be negative
    ],
)
def test_better_and_reached(
    metric: Metric, score: float, than: float, better: bool, reached: bool
) -> None:
    assert metric.better(score, than) is better
    assert metric.reached(score, than) is reached


def test_anything_beats_none() -> None:
    assert MAX.better(-1e300, None)
    assert MIN.better(1e300, None)


def test_best_worst_and_sign() -> None:
    scores = [0.3, 0.9, 0.1]
    assert (MAX.best(scores), MAX.worst(scores)) == (0.9, 0.1)
    assert (MIN.best(scores), MIN.worst(scores)) == (0.1, 0.9)
    assert max(scores, key=lambda v: MIN.sign * v) == MIN.best(scores)
    pairs = [(0.5, 3), (0.5, 1), (0.2, 2)]
    assert MAX.best(pairs, key=lambda p: (p[0], -p[1])) == (0.5, 1)
    assert MIN.best(pairs, key=lambda p: (p[0], -p[1])) == (0.2, 2)
    with pytest.raises(ValueError, match="empty"):
        MAX.best([])


def test_sql_order_and_aggregate() -> None:
    score = column("score")
    assert str(select(score).order_by(MAX.order_by(score))).endswith("ORDER BY score DESC")
    assert str(select(score).order_by(MIN.order_by(score))).endswith("ORDER BY score ASC")
    assert str(MAX.best_of(score)) == str(func.max(score))
    assert str(MIN.best_of(score)) == str(func.min(score))
    assert (MAX.comparison, MIN.comparison, MAX.beyond, MIN.beyond) == (
        ">=",
        "<=",
        "below",
        "above",
    )
