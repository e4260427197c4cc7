"""Make values safe for strict JSON: non-finite floats become None (DESIGN.md: NaN and
inf never reach a JSON body as bare tokens)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["finite_or_none"]


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
