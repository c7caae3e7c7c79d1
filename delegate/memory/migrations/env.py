"""Alembic environment: online only, on the connection `Store.open` passes in.

The store runs `alembic.command.upgrade` with `config.attributes["connection"]` set to a
connection already inside its write transaction (BEGIN IMMEDIATE on SQLite, an advisory lock
on PostgreSQL), so concurrent openers of a fresh database migrate it exactly once.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from delegate.memory.schema import Base

config = context.config
connection = config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError(
        "delegate's migrations run through Store.open, which passes a connection; "
        "open the database with delegate.memory.Store.open(url) instead of the alembic CLI"
    )
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
