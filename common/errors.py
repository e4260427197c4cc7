"""One exception tree for gridless; every error a user can cause derives from `GridlessError`."""

from __future__ import annotations

__all__ = [
    "ConflictError",
    "GridlessError",
    "NotFoundError",
    "SpecError",
    "StorageError",
]


class GridlessError(Exception):
    """Base class of every error gridless raises on purpose."""


class SpecError(GridlessError, ValueError):
    """A study specification or search space breaks a rule; the message names field and rule."""


class StorageError(GridlessError):
    """The database or the checkpoint store failed; the original error is chained."""


class NotFoundError(GridlessError, LookupError):
    """A study, trial or checkpoint that was asked for does not exist."""


class ConflictError(GridlessError):
    """A request contradicts the current state, e.g. a report for a finished trial."""
