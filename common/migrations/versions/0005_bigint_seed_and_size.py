"""A study's seed and a checkpoint's size are 64-bit: PostgreSQL's INTEGER is
32 bits, so a spec's seed from 2**31 up, or a checkpoint of 2 GiB, was a database error
(503) there. SQLite stores both the same way as before.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


COLUMNS = (("studies", "seed"), ("checkpoints", "size"))


def _sqlite() -> bool:
    # SQLite's INTEGER already holds 64 bits; copying the tables (batch mode) would only
    # fight their foreign keys.
    return bool(op.get_bind().dialect.name == "sqlite")


def upgrade() -> None:
    if _sqlite():
        return
    for table, column in COLUMNS:
        op.alter_column(table, column, type_=sa.BigInteger(), existing_type=sa.Integer())


def downgrade() -> None:
    if _sqlite():
        return
    for table, column in COLUMNS:
        op.alter_column(table, column, type_=sa.Integer(), existing_type=sa.BigInteger())
