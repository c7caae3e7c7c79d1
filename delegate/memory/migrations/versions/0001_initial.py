"""Initial schema: runs, tasks, events, memories (+ full-text search), memory_tags, cache.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from delegate.memory.schema import UTCDateTime

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# SQLite: an external-content FTS5 table over memories(key, text, value), kept in sync by
# triggers. Memory rows are only inserted by delegate; the update and delete triggers keep
# the index honest when someone edits the table by hand.
_SQLITE_FTS = [
    """CREATE VIRTUAL TABLE memories_fts USING fts5(
        key, text, value, content='memories', content_rowid='id',
        tokenize='unicode61 remove_diacritics 0')""",
    """CREATE TRIGGER memories_fts_ai AFTER INSERT ON memories BEGIN
        INSERT INTO memories_fts(rowid, key, text, value)
        VALUES (new.id, new.key, new.text, new.value);
    END""",
    """CREATE TRIGGER memories_fts_ad AFTER DELETE ON memories BEGIN
        INSERT INTO memories_fts(memories_fts, rowid, key, text, value)
        VALUES ('delete', old.id, old.key, old.text, old.value);
    END""",
    """CREATE TRIGGER memories_fts_au AFTER UPDATE OF key, text, value ON memories BEGIN
        INSERT INTO memories_fts(memories_fts, rowid, key, text, value)
        VALUES ('delete', old.id, old.key, old.text, old.value);
        INSERT INTO memories_fts(rowid, key, text, value)
        VALUES (new.id, new.key, new.text, new.value);
    END""",
]

# PostgreSQL: a generated tsvector over the same columns. Punctuation becomes spaces first so
# that "user.profile" or "a_b" split into words as SQLite's unicode61 tokenizer splits them;
# the 'simple' configuration neither stems nor drops stop words, again like SQLite.
_PG_WORDS = "regexp_replace(coalesce({col}, ''), '[[:punct:][:space:]]+', ' ', 'g')"
_PG_FTS = [
    "ALTER TABLE memories ADD COLUMN search tsvector GENERATED ALWAYS AS ("
    + " || ".join(
        f"setweight(to_tsvector('simple'::regconfig, {_PG_WORDS.format(col=col)}), '{weight}')"
        for col, weight in (("key", "A"), ("text", "B"), ("value", "D"))
    )
    + ") STORED",
    "CREATE INDEX ix_memories_search ON memories USING gin (search)",
]


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("workflow", sa.Text(), nullable=True),
        sa.Column("goal", sa.Text(), nullable=True),
        sa.Column("inputs", sa.Text(), nullable=False),
        sa.Column("graph", sa.Text(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("budget", sa.Text(), nullable=True),
        sa.Column("usage", sa.Text(), nullable=True),
        sa.Column("output", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_runs_created_at", "runs", ["created_at"])
    op.create_table(
        "tasks",
        sa.Column(
            "run_id",
            sa.String(200),
            sa.ForeignKey("runs.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("task_id", sa.String(500), primary_key=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("agent", sa.Text(), nullable=True),
        sa.Column("model", sa.Text(), nullable=True),
        sa.Column("output", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("usage", sa.Text(), nullable=True),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_tasks_run_position", "tasks", ["run_id", "position"])
    op.create_table(
        "events",
        sa.Column(
            "run_id",
            sa.String(200),
            sa.ForeignKey("runs.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("seq", sa.Integer(), primary_key=True),
        sa.Column("kind", sa.String(100), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
    )
    op.create_table(
        "memories",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("namespace", sa.String(200), nullable=False),
        sa.Column("key", sa.String(500), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("tags", sa.Text(), nullable=False),
        sa.Column("run_id", sa.String(200), nullable=True),
        sa.Column("task_id", sa.String(500), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint(
            "namespace", "key", "version", name="uq_memories_namespace_key_version"
        ),
    )
    op.create_table(
        "memory_tags",
        sa.Column(
            "memory_id",
            _ID,
            sa.ForeignKey("memories.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("tag", sa.String(200), primary_key=True),
    )
    op.create_index("ix_memory_tags_tag", "memory_tags", ["tag", "memory_id"])
    op.create_table(
        "cache",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("response", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    dialect = op.get_bind().dialect.name
    for statement in _SQLITE_FTS if dialect == "sqlite" else _PG_FTS:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE IF EXISTS memories_fts")
    for table in ("cache", "memory_tags", "memories", "events", "tasks", "runs"):
        op.drop_table(table)
