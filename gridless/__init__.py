"""gridless: coarse-to-fine hyperparameter search for your own training code.

A study names your training function (`train: "module:function"` in its spec); each
trial calls it with a `Trial`:

    import gridless

    def train(trial: gridless.Trial) -> None:
        lr = trial.params["learning_rate"]
        for epoch in trial.epochs():
            ...
            trial.report(epoch, val_loss=val_loss, val_accuracy=val_accuracy)
            trial.save({"model": model.state_dict()})

`trial.report` raises `TrialStopped` when the master ends the trial; gridless catches
it. The repository's `common`, `worker` and `master` packages are installed as
`gridless.common`, `gridless.worker` and `gridless.master`; what user code needs is here.
"""

from __future__ import annotations

# First: in a checkout, this maps gridless.common, .worker and .master to the top folders.
from gridless import _layout  # noqa: F401
from gridless.common.metric import Metric
from gridless.worker.trial import Trial, TrialStopped, load_state

__all__ = ["Metric", "Trial", "TrialStopped", "load_state"]
