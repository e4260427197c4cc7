"""Ensembles as jobs: each request to build a study's ensembles is a row that a
worker's job fills in (queued, running, done with its report, or failed with why), so a
restarted master still answers for it.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ensemble_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("host", sa.String(length=255), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("ensemble_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["ensemble_id"], ["ensembles.id"]),
        sa.ForeignKeyConstraint(["study_id"], ["studies.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("ensemble_jobs") as batch_op:
        batch_op.create_index(batch_op.f("ix_ensemble_jobs_study_id"), ["study_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("ensemble_jobs") as batch_op:
        batch_op.drop_index(batch_op.f("ix_ensemble_jobs_study_id"))
    op.drop_table("ensemble_jobs")
