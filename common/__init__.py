"""Shared pieces of gridless: search spaces, study specs, checkpoints, storage models.

`worker` and `master` both build on every part of it, so its public surface is a list of
modules (`__all__`), each exporting its own `__all__`; `migrate` and `migrations` are
its own (the database opens through `db.make_engine`). tests/test_layering.py holds the
other packages to these names.
"""

__all__ = [
    "bounds",
    "checkpoint_files",
    "checkpoints",
    "db",
    "errors",
    "exports",
    "jsonsafe",
    "limits",
    "messages",
    "metric",
    "settings",
    "space",
    "spec",
    "states",
]
