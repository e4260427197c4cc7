"""gridless workers: trainers, models and the Ray worker loop (never imports `master`).

What the other packages may use of it is `__all__`, each name defined in the module
`_HOMES` gives and imported from there on first use, so that importing the package
(as `import gridless` does) starts neither Ray nor torch. The master uses a narrower
part (the actors it launches, the jobs they run, the checks of its CLI): the allow-list
of tests/test_layering.py.
"""

from __future__ import annotations

from gridless.common.exports import lazy_getattr

_HOMES = {
    # what Ray launches and runs (master/launcher.py, master/ensemble_jobs.py)
    "TaskActor": "gridless.worker.actor",
    "WorkerActor": "gridless.worker.actor",
    "run_worker": "gridless.worker.loop",
    "EnsembleMember": "gridless.worker.ensemble_jobs",
    "EnsembleOutcome": "gridless.worker.ensemble_jobs",
    "EnsembleRequest": "gridless.worker.ensemble_jobs",
    "build_ensembles": "gridless.worker.ensemble_jobs",
    # the checks the CLI runs before a study starts
    "PreflightReport": "gridless.worker.diagnostics.preflight",
    "preflight": "gridless.worker.diagnostics.preflight",
    "smoke_check": "gridless.worker.diagnostics.smoke",
    "load_train_function": "gridless.worker.function_runner",
    "check_params": "gridless.worker.trainer",
    "custom_factory": "gridless.worker.trainer",
    # user code's API (gridless/__init__.py, gridless/checks.py)
    "Trial": "gridless.worker.trial",
    "TrialStopped": "gridless.worker.trial",
    "load_state": "gridless.worker.trial",
    "gradcheck": "gridless.worker.diagnostics.user_checks",
    "sanity": "gridless.worker.diagnostics.user_checks",
}

__all__ = sorted(_HOMES)

__getattr__ = lazy_getattr(__name__, _HOMES)
