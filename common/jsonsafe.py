"""Make values safe for strict JSON: non-finite floats become None (DESIGN.md: NaN and
inf never reach a JSON body as bare tokens)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["MAX_DEPTH", "check_strict_json", "finite_or_none"]

MAX_DEPTH = 32


def finite_or_none(value: Any) -> Any:
    """Recursively copy `value`, turning NaN/inf into None and NumPy scalars into Python."""
    if isinstance(value, Mapping):
        return {str(k): finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def check_strict_json(value: Any, where: str, *, depth: int = 0) -> None:
    """Refuse what strict JSON cannot carry or a database should not hold: NaN, Infinity
    (1e309 parses to it), and nesting deeper than MAX_DEPTH.

    Raises:
        ValueError: naming the path of the first offending value.
    """
    if depth > MAX_DEPTH:
        raise ValueError(f"{where}: nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where}: must be a finite number, but got {value!r}")
    if isinstance(value, Mapping):
        for key, item in value.items():
            check_strict_json(item, f"{where}.{key}" if where else str(key), depth=depth + 1)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            check_strict_json(item, f"{where}[{index}]", depth=depth + 1)
