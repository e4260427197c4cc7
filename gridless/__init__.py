"""gridless: coarse-to-fine hyperparameter search for your own training code."""

from __future__ import annotations

__all__: list[str] = []
