"""How the store's database engine is made: the default URL, SQLite's pragmas and its
`BEGIN IMMEDIATE` writes, PostgreSQL's pool. Used by `delegate.memory.store` only."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import StaticPool

from delegate.errors import ConfigError

__all__ = ["BUSY_TIMEOUT_S", "WRITE_OPTION", "default_url", "make_engine", "normalize_url"]


BUSY_TIMEOUT_S = 30.0
WRITE_OPTION = "delegate_write"
"""The execution option that marks a connection's transaction as a write (`BEGIN IMMEDIATE`)."""


def default_url() -> str:
    """The home store's URL: the CLI's, and `Orchestrator(memory="home")`'s.

    `$DELEGATE_DB_URL` if set, else the SQLite file `$DELEGATE_HOME/delegate.db`, with
    `DELEGATE_HOME` defaulting to `~/.delegate` (created when missing).
    """
    env_url = os.environ.get("DELEGATE_DB_URL")
    if env_url:
        return env_url
    home = Path(os.environ.get("DELEGATE_HOME") or "~/.delegate").expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / 'delegate.db'}"


def normalize_url(url: str) -> str:
    if url == ":memory:":
        return "sqlite://"
    if "://" not in url:
        return f"sqlite:///{Path(url).expanduser().absolute()}"
    scheme, rest = url.split("://", 1)
    if scheme in ("postgresql", "postgres"):
        return f"postgresql+psycopg://{rest}"
    return url


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's `begin` event below emit BEGIN itself (pysqlite's own is deferred).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        _wal(cursor)
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _wal(cursor: Any) -> None:
    """The database in WAL mode: asked first, set only when it is not.

    A new connection's journal-mode pragma can meet "database is locked" without SQLite's busy
    handler being asked to wait (while another connection checkpoints or resets the WAL), so a
    store opened beside a running writer (a second process, `delegate show` during a run) tries
    again for up to the busy timeout instead of failing at once.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            (mode,) = cursor.execute("PRAGMA journal_mode").fetchone()
            if str(mode).lower() != "wal":
                cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.01)  # a worker thread's: every Store call runs in one


def _sqlite_begin(conn: Connection) -> None:
    write = conn.get_execution_options().get(WRITE_OPTION, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def make_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"database URL is not valid: {exc}") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            engine = create_engine(
                "sqlite://",
                poolclass=StaticPool,
                connect_args={"check_same_thread": False},
            )
        else:
            engine = create_engine(
                parsed,
                pool_size=4,
                max_overflow=16,
                connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_S},
            )
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if backend == "postgresql":
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise ConfigError(
                'PostgreSQL needs psycopg 3: pip install "delegate[postgres]"'
            ) from None
        return create_engine(parsed, pool_size=4, max_overflow=16, pool_pre_ping=True)
    raise ConfigError(
        f"database URL scheme {parsed.drivername!r} is not supported; use a SQLite path, "
        "'sqlite:///path/to/delegate.db', ':memory:' or 'postgresql+psycopg://user@host/db'"
    )
