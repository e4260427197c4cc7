"""Alembic's environment for gridless: run with the connection `common.migrate` hands over.

There is no alembic.ini; `common.migrate.upgrade` builds the configuration in code, so
an installed gridless migrates its own database without any file outside the package.
"""

from __future__ import annotations

from alembic import context

from gridless.common.db import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite cannot ALTER most things; batch mode copies the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
