"""tool_approvals and paused_tasks: tool calls that wait for a human, and where their task stopped.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from delegate.memory.schema import UTCDateTime

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "tool_approvals",
        sa.Column(
            "run_id",
            sa.String(200),
            sa.ForeignKey("runs.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("call_id", sa.String(64), primary_key=True),
        sa.Column("task_id", sa.String(500), nullable=False),
        sa.Column("agent", sa.Text(), nullable=False),
        sa.Column("tool", sa.Text(), nullable=False),
        sa.Column("arguments", sa.Text(), nullable=False),
        sa.Column("why", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("decided_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_tool_approvals_status", "tool_approvals", ["status", "run_id"])
    op.create_table(
        "paused_tasks",
        sa.Column(
            "run_id",
            sa.String(200),
            sa.ForeignKey("runs.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("task_id", sa.String(500), primary_key=True),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("paused_tasks")
    op.drop_index("ix_tool_approvals_status", table_name="tool_approvals")
    op.drop_table("tool_approvals")
