"""run_spend: what a run's calls have charged, kept as it goes, so a resumed run keeps its budget.

A table of its own, not a column of `runs`: it is rewritten at every group commit of a budgeted
run, and a `runs` row carries the whole graph spec (megabytes for a large graph).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "run_spend",
        sa.Column(
            "run_id",
            sa.String(200),
            sa.ForeignKey("runs.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("spend", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("run_spend")
