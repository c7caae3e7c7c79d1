"""task_steps: the journal of finished model calls of tasks that make several per answer.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from delegate.memory.schema import UTCDateTime

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "task_steps",
        sa.Column(
            "run_id",
            sa.String(200),
            sa.ForeignKey("runs.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("task_id", sa.String(500), primary_key=True),
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("occurrence", sa.Integer(), primary_key=True),
        sa.Column("response", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("task_steps")
