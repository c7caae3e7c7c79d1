"""routing_outcomes: what learned routing learned, one row per routed task.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from delegate.memory.schema import UTCDateTime

revision = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "routing_outcomes",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("namespace", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(500), nullable=False),
        sa.Column("arm", sa.String(500), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.Column("latency_s", sa.Float(), nullable=False),
        sa.Column("run_id", sa.String(500), nullable=False),
        sa.Column("task_id", sa.String(500), nullable=False),
        sa.Column("explored", sa.Boolean(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_routing_outcomes_kind", "routing_outcomes", ["namespace", "kind", "arm"])


def downgrade() -> None:
    op.drop_index("ix_routing_outcomes_kind", table_name="routing_outcomes")
    op.drop_table("routing_outcomes")
