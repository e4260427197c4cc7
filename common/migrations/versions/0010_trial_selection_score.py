"""Re-scoring: a trial's selection score, what ranks it: its best score, or the
mean over seeds of its configuration once the stage's top was re-run on more seeds.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("trials") as batch_op:
        batch_op.add_column(sa.Column("selection_score", sa.Float(), nullable=True))
        batch_op.create_index("ix_trials_selection", ["study_id", "selection_score"], unique=False)
    op.execute("UPDATE trials SET selection_score = best_score")


def downgrade() -> None:
    with op.batch_alter_table("trials") as batch_op:
        batch_op.drop_index("ix_trials_selection")
        batch_op.drop_column("selection_score")
