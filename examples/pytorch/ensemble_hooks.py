"""What `gridless ensemble` needs to average the models of train.py (the spec names them:
`predict: ensemble_hooks:predict`, `evaluate: ensemble_hooks:evaluate`).

gridless picks the members (the study's top trials, and the best trial's kept epochs) by
their validation scores, calls `predict` on each member's checkpoint for the validation
and the test split, averages the probabilities, and scores the averages with `evaluate`.
"""

from __future__ import annotations

import numpy as np
import torch
from train import DATA, DigitsNpz, SmallCNN, make_npz


def predict(state: dict, params: dict, split: str) -> np.ndarray:
    """Class probabilities (N, 10) of `split` ("val" or "test") from a saved trial:
    `state` is what train.py gave `trial.save`, `params` the trial's hyperparameters."""
    model = SmallCNN(int(params["hidden"]), float(params["dropout"]))
    model.load_state_dict(state["model"])
    model.eval()
    with torch.no_grad():
        return torch.softmax(model(DigitsNpz(make_npz(DATA / "digits.npz"), split).x), 1).numpy()


def evaluate(probabilities: np.ndarray, split: str) -> dict[str, float]:
    """The metrics of (averaged) probabilities on `split`: `accuracy` is the study's
    `val_accuracy` without its prefix."""
    y = DigitsNpz(make_npz(DATA / "digits.npz"), split).y.numpy()
    picked = np.clip(probabilities[np.arange(len(y)), y], 1e-12, 1.0)
    return {
        "accuracy": float(np.mean(probabilities.argmax(1) == y)),
        "nll": float(-np.log(picked).mean()),
    }
