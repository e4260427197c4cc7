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
it. From Python (a notebook, a script), `gridless.run(spec)` runs a study as `gridless
run` does and returns its `Study`; `gridless.connect(url).study(name)` reads one on a
running master; `study.best` and `gridless.load_best(study)` give its best result.

The repository's `common`, `worker` and `master` packages are installed as
`gridless.common`, `gridless.worker` and `gridless.master`; what user code needs is here.
The Python API's names are imported on first use, so `import gridless` in a trial (on a
worker) loads neither the master nor its web stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

# First: in a checkout, this maps gridless.common, .worker and .master to the top folders.
from gridless import _layout  # noqa: F401
from gridless.common.exports import lazy_getattr
from gridless.common.metric import Metric
from gridless.worker.trial import Trial, TrialStopped, load_state

if TYPE_CHECKING:
    from gridless.master import Best, Client, Study, TrialResult, connect, load_best, run

_API = ("Best", "Client", "Study", "TrialResult", "connect", "load_best", "run")
_HOMES = dict.fromkeys(_API, "gridless.master")

__all__ = [
    "Best",
    "Client",
    "Metric",
    "Study",
    "Trial",
    "TrialResult",
    "TrialStopped",
    "connect",
    "load_best",
    "load_state",
    "run",
]

__getattr__ = lazy_getattr(__name__, _HOMES)
