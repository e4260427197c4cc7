"""Epoch metrics carry their trial's stage, indexed with the epoch: the median stopping
rule reads one stage's scores at one epoch on every report, and through a join on the
trials it cost 48 ms a report with 100,000 trials stored (`python -m
benchmarks.master_load`). Existing rows get their stage from their trial.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("epoch_metrics") as batch_op:
        batch_op.add_column(sa.Column("stage_id", sa.Integer(), nullable=True))
    op.execute(
        "UPDATE epoch_metrics SET stage_id = "
        "(SELECT trials.stage_id FROM trials WHERE trials.id = epoch_metrics.trial_id)"
    )
    with op.batch_alter_table("epoch_metrics") as batch_op:
        batch_op.create_index("ix_epoch_metrics_stage_epoch", ["stage_id", "epoch"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("epoch_metrics") as batch_op:
        batch_op.drop_index("ix_epoch_metrics_stage_epoch")
        batch_op.drop_column("stage_id")
