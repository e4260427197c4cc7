"""Bounded integers for everything a client sends.

JSON and query strings carry integers of any size, and Python reads them as such; a
database column does not hold them (SQLite raises OverflowError past 64 bits, and an
unchecked value became a 500). Every id, count, epoch, attempt, offset and limit the API
accepts is one of these types, or a narrower bound of its own, so an integer out of range
is a 422 naming the field before any query runs. `tests/master/test_integer_bounds.py`
walks the OpenAPI schema to hold every route to it.
"""

from __future__ import annotations

from typing import Annotated, Final

from pydantic import Field

__all__ = ["INT32_MAX", "INT64_MAX", "INT64_MIN", "Count", "Id", "Number", "Offset"]

# A signed 64-bit integer: what SQLite's INTEGER column and PostgreSQL's BIGINT hold.
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
# PostgreSQL's INTEGER, the type of every id, number, attempt and epoch column: the
# narrower bound those fields have (on SQLite too, so both databases answer alike).
INT32_MAX: Final = 2**31 - 1

# `lt=2**63` rather than `le=2**63 - 1`: FastAPI's OpenAPI models hold bounds as floats;
# 2**63 is one exactly, while 2**63 - 1 would be published rounded up to 2**63.
Id = Annotated[int, Field(ge=1, lt=INT32_MAX + 1)]
"""A row id (study, trial): databases number rows from 1; INTEGER columns."""

Number = Annotated[int, Field(ge=0, lt=INT32_MAX + 1)]
"""Zero or more, in an INTEGER column: a trial number, an attempt, an epoch, a stage."""

Count = Annotated[int, Field(ge=0, lt=INT64_MAX + 1)]
"""Zero or more, in a BIGINT column: a size in bytes, a seed."""

Offset = Annotated[int, Field(ge=0, le=10**9)]
"""How far into a listing a page starts: far past any table, far below 64 bits."""
