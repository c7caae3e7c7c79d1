"""The store's tables, as SQLAlchemy 2 typed declarative models.

JSON payloads are TEXT columns holding `json.dumps` output on both backends, so what is read
back is exactly what was written and a row that does not parse is caught by the store.
Full-text search lives outside these models, created by the migration: an FTS5 table kept in
sync by triggers on SQLite, a generated `tsvector` column with a GIN index on PostgreSQL.

`SCHEMA_REVISION` is the Alembic head this code writes; the store compares it with the
database's `alembic_version` to skip the migration machinery when there is nothing to do.
"""

from __future__ import annotations

import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

__all__ = [
    "SCHEMA_REVISION",
    "Base",
    "CacheRow",
    "EventRow",
    "MemoryRow",
    "MemoryTagRow",
    "PausedTaskRow",
    "RoutingOutcomeRow",
    "RunLeaseRow",
    "RunRow",
    "RunSpendRow",
    "TaskRow",
    "TaskStepRow",
    "ToolApprovalRow",
    "UTCDateTime",
]

SCHEMA_REVISION = "0006"

# SQLite only aliases the rowid for a column declared exactly INTEGER PRIMARY KEY.
_ID = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime.datetime]):
    """A timezone-aware UTC datetime on both backends (SQLite stores it naive, in UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(
        self, value: datetime.datetime | None, dialect: Dialect
    ) -> datetime.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        value = value.astimezone(datetime.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime.datetime | None:
        if not isinstance(value, datetime.datetime):
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=datetime.UTC)
        return value.astimezone(datetime.UTC)


class Base(DeclarativeBase):
    """The declarative base of every table of the store."""


class RunRow(Base):
    """A run: its request, graph, status and result."""

    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    workflow: Mapped[str | None] = mapped_column(Text)
    goal: Mapped[str | None] = mapped_column(Text)
    inputs: Mapped[str] = mapped_column(Text)
    graph: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(32))
    budget: Mapped[str | None] = mapped_column(Text)
    usage: Mapped[str | None] = mapped_column(Text)
    output: Mapped[str] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime.datetime] = mapped_column(UTCDateTime(), index=True)
    finished_at: Mapped[datetime.datetime | None] = mapped_column(UTCDateTime())


class RunSpendRow(Base):
    """What a run's calls have charged so far (JSON), rewritten at each group commit.

    Apart from `runs`, whose row carries the whole graph spec, so that the frequent rewrite
    stays small.
    """

    __tablename__ = "run_spend"

    run_id: Mapped[str] = mapped_column(
        String(200), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    spend: Mapped[str] = mapped_column(Text)


class RunLeaseRow(Base):
    """Who owns a running run: the process that renews it (heartbeat) before it expires."""

    __tablename__ = "run_leases"

    run_id: Mapped[str] = mapped_column(
        String(200), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    owner: Mapped[str] = mapped_column(String(64))
    host: Mapped[str] = mapped_column(Text)
    pid: Mapped[int] = mapped_column(Integer)
    heartbeat_at: Mapped[datetime.datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime.datetime] = mapped_column(UTCDateTime())


class TaskRow(Base):
    """The latest state of one task of a run; `position` keeps the order of first write."""

    __tablename__ = "tasks"

    run_id: Mapped[str] = mapped_column(
        String(200), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    task_id: Mapped[str] = mapped_column(String(500), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    spec: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(32))
    attempts: Mapped[int] = mapped_column(Integer)
    agent: Mapped[str | None] = mapped_column(Text)
    model: Mapped[str | None] = mapped_column(Text)
    output: Mapped[str] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    usage: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime.datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime.datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_tasks_run_position", "run_id", "position"),)


class EventRow(Base):
    """One event of a run's append-only log, numbered from 1 without gaps."""

    __tablename__ = "events"

    run_id: Mapped[str] = mapped_column(
        String(200), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(100))
    at: Mapped[float] = mapped_column(Float)
    data: Mapped[str] = mapped_column(Text)


class MemoryRow(Base):
    """One version of a memory entry; rows are only ever inserted.

    `id` is a surrogate key because SQLite's FTS5 external-content table needs a stable
    integer rowid; (namespace, key, version) is unique and is what callers address.
    """

    __tablename__ = "memories"

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    namespace: Mapped[str] = mapped_column(String(200))
    key: Mapped[str] = mapped_column(String(500))
    version: Mapped[int] = mapped_column(Integer)
    value: Mapped[str] = mapped_column(Text)
    text: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[str] = mapped_column(Text)
    run_id: Mapped[str | None] = mapped_column(String(200))
    task_id: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime.datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        UniqueConstraint("namespace", "key", "version", name="uq_memories_namespace_key_version"),
    )


class MemoryTagRow(Base):
    """One tag of one memory version, so tag filters are plain indexed SQL on both backends."""

    __tablename__ = "memory_tags"

    memory_id: Mapped[int] = mapped_column(
        _ID, ForeignKey("memories.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(200), primary_key=True)

    __table_args__ = (Index("ix_memory_tags_tag", "tag", "memory_id"),)


class CacheRow(Base):
    """A cached model response, by request key."""

    __tablename__ = "cache"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    model: Mapped[str] = mapped_column(Text)
    response: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime.datetime] = mapped_column(UTCDateTime())


class ToolApprovalRow(Base):
    """A tool call that needs a human's decision: pending, then approved or denied.

    A table of its own, not columns of `tasks`: a task row is rewritten at every event of a
    run, and these rows are written rarely — when a task pauses, and by `delegate approve`
    from another process while the run's row is untouched.
    """

    __tablename__ = "tool_approvals"

    run_id: Mapped[str] = mapped_column(
        String(200), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    call_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    task_id: Mapped[str] = mapped_column(String(500))
    agent: Mapped[str] = mapped_column(Text)
    tool: Mapped[str] = mapped_column(Text)
    arguments: Mapped[str] = mapped_column(Text)
    why: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))  # "pending", "approved" or "denied"
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime.datetime] = mapped_column(UTCDateTime())
    decided_at: Mapped[datetime.datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_tool_approvals_status", "status", "run_id"),)


class PausedTaskRow(Base):
    """Where a waiting task's agent stopped: its conversation and the round of tool calls
    (JSON), so a resume goes on without asking the model again."""

    __tablename__ = "paused_tasks"

    run_id: Mapped[str] = mapped_column(
        String(200), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    task_id: Mapped[str] = mapped_column(String(500), primary_key=True)
    state: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime.datetime] = mapped_column(UTCDateTime())


class TaskStepRow(Base):
    """A finished model call of a task that makes several per answer (votes, a judge, a
    strategy, a tool loop): its response (JSON), by the request's key and its occurrence, so a
    retry or a resume answers it again without sending it (`delegate.orchestrator._journal`).

    Kept while the task may run again: the rows go when its result is stored.
    """

    __tablename__ = "task_steps"

    run_id: Mapped[str] = mapped_column(
        String(200), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    task_id: Mapped[str] = mapped_column(String(500), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    occurrence: Mapped[int] = mapped_column(Integer, primary_key=True)
    response: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime.datetime] = mapped_column(UTCDateTime())


class RoutingOutcomeRow(Base):
    """The outcome of one task that learned routing placed (`delegate.memory._routing`): its
    kind, the arm (model and effort) it ran on, whether its first answer passed verification,
    and what it cost. No foreign key to `runs`: what was learned outlives the runs."""

    __tablename__ = "routing_outcomes"

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    namespace: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(500))
    arm: Mapped[str] = mapped_column(String(500))
    passed: Mapped[bool] = mapped_column(Boolean)
    cost_usd: Mapped[float] = mapped_column(Float)
    latency_s: Mapped[float] = mapped_column(Float)
    run_id: Mapped[str] = mapped_column(String(500))
    task_id: Mapped[str] = mapped_column(String(500))
    explored: Mapped[bool] = mapped_column(Boolean)
    at: Mapped[datetime.datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_routing_outcomes_kind", "namespace", "kind", "arm"),)
