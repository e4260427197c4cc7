"""Schema migrations (Alembic): every database, old or new, is brought to the head
revision when the master opens it, in place and in one transaction.

Databases made before migrations existed (gridless 0.1 up to stop 11) hold the
schema of revision 0001 without an `alembic_version` table; they are stamped 0001
and then upgraded like any other.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Connection, Engine

__all__ = ["BASELINE", "current_revision", "head_revision", "upgrade"]

BASELINE = "0001"
_HERE = Path(__file__).resolve().parent / "migrations"


def _config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """The newest revision this gridless knows."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision a database is at (None for an empty or pre-migration database)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database to `revision` (default: head), stamping pre-migration ones."""
    with engine.begin() as connection:
        cfg = _config(connection)
        current = MigrationContext.configure(connection).get_current_revision()
        if current == head_revision() and revision == "head":
            return
        tables = set(inspect(connection).get_table_names())
        if current is None and "studies" in tables:
            command.stamp(cfg, BASELINE)
        command.upgrade(cfg, revision)
