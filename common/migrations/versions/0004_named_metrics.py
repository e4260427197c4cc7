"""Any named metric: each epoch row keeps every number the trial reported
(`metrics`, JSON) and the study's objective (`score`), which the median rule reads; each
trial keeps the metrics of its best epoch for the ranked table's columns and `sort=`.
Existing rows get their score from the accuracy or loss column of their study's metric.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("epoch_metrics") as batch_op:
        batch_op.add_column(sa.Column("metrics", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("score", sa.Float(), nullable=True))
    with op.batch_alter_table("trials") as batch_op:
        batch_op.add_column(sa.Column("best_metrics", sa.JSON(), nullable=True))
    op.execute(
        "UPDATE epoch_metrics SET score = (SELECT CASE WHEN studies.metric = 'val_loss' "
        "THEN epoch_metrics.val_loss ELSE epoch_metrics.val_accuracy END "
        "FROM trials JOIN studies ON studies.id = trials.study_id "
        "WHERE trials.id = epoch_metrics.trial_id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("trials") as batch_op:
        batch_op.drop_column("best_metrics")
    with op.batch_alter_table("epoch_metrics") as batch_op:
        batch_op.drop_column("score")
        batch_op.drop_column("metrics")
