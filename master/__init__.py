"""The gridless master: FastAPI app, services over the database, worker manager, CLI.

Nothing below it imports it; what the top-level package and embedders may use is
`__all__` (the `gridless` command and the app), imported from its module on first use
so that importing the package starts neither the CLI nor the app.
"""

from __future__ import annotations

from gridless.common.exports import lazy_getattr

_HOMES = {
    "create_app": "gridless.master.app",  # a master inside another program (tests, benchmarks)
    "main": "gridless.master.cli",  # the `gridless` console script (gridless/__main__.py)
    # gridless from Python (gridless/__init__.py): launch a study, read its result
    "Best": "gridless.master.python_api",
    "Client": "gridless.master.python_api",
    "Study": "gridless.master.python_api",
    "TrialResult": "gridless.master.python_api",
    "connect": "gridless.master.python_api",
    "load_best": "gridless.master.python_api",
    "run": "gridless.master.python_run",
}

__all__ = sorted(_HOMES)

__getattr__ = lazy_getattr(__name__, _HOMES)
