"""gridless from a notebook: launch a search of train.py (beside this file), wait for it,
print the best parameters, load the best model and score it again. No CLI; each block is
a notebook cell. From this folder, or from anywhere:

    python examples/pytorch/notebook.py

The spec is a plain dict (a YAML file's path works too); `train: "train:main"` is found
where this process imports `train` from, and the workers import it from there as well.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader
from train import DATA, DigitsNpz, SmallCNN, evaluate, make_npz

import gridless

spec = {
    "name": "notebook-digits-cnn",
    "train": "train:main",
    "metric": "val_accuracy",
    "space": {
        "lr": {"log_uniform": [1e-3, 3e-2]},
        "weight_decay": {"log_uniform": [1e-6, 1e-2]},
        "hidden": {"int_log_uniform": [16, 64]},
        "dropout": {"uniform": [0.0, 0.3]},
    },
    "stages": [{"trials": 4, "epochs": 2}, {"trials": 2, "epochs": 3}],
}

# Runs the study on a local Ray (as `gridless run` does) and returns when it is over.
study = gridless.run(spec, workers=2, run_dir="gridless-runs")
print(f"study {study.name}: {study.state}, run directory {study.run_dir}")

trials = study.trials()  # plain objects; study.trials_frame() is a pandas DataFrame
print(f"{len(trials)} trials, {sum(t.state == 'completed' for t in trials)} completed")

best = study.best
assert best is not None
print(f"best val_accuracy {best.score:.4f} (trial {best.trial}, epoch {best.epoch})")
print("best params:", best.params)
print("best checkpoint:", best.checkpoint)

# What train.py saved at the best epoch ({"model": ..., "optimizer": ..., "scheduler": ...}),
# read without pickle, as trial.restore() reads it.
state = gridless.load_best(study)
model = SmallCNN(int(best.params["hidden"]), float(best.params["dropout"]))
model.load_state_dict(state["model"])
val = DataLoader(DigitsNpz(make_npz(DATA / "digits.npz"), "val"), batch_size=256)
val_loss, val_accuracy = evaluate(model, val, "cpu")
print(f"the loaded model scores val_accuracy {val_accuracy:.4f} again")
assert abs(val_accuracy - best.score) < 1e-6, (val_accuracy, best.score)
assert isinstance(state["model"]["fc2.weight"], torch.Tensor)

study.close()  # the master stops; the run directory stays (`gridless master` serves it)
