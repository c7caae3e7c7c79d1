"""Alembic migrations of the store, applied by `Store.open` (no alembic.ini needed).

Alembic is imported only when the database is not already at `SCHEMA_REVISION`, so opening
an up-to-date store does not pay for it. Alembic keeps the migration's context in a process-wide
global, so one process migrates one database at a time (`_MIGRATING`): two stores opened at once
from two threads would otherwise run each other's migrations on each other's connections.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, text

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = ["SCRIPT_LOCATION", "current_revisions", "unknown_revisions", "upgrade"]

SCRIPT_LOCATION = Path(__file__).parent

_MIGRATING = threading.Lock()  # alembic's `context` is one global per process


def _config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    return config


def current_revisions(conn: Connection) -> list[str]:
    """The revisions stamped in the database's `alembic_version` (empty for a new database)."""
    if not conn.dialect.has_table(conn, "alembic_version"):
        return []
    return sorted(row[0] for row in conn.execute(text("SELECT version_num FROM alembic_version")))


def unknown_revisions(current: list[str]) -> tuple[list[str], str | None]:
    """The revisions in `current` this code has no script for, and the head it knows."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_config())
    known = {rev.revision for rev in script.walk_revisions()}
    return [rev for rev in current if rev not in known], script.get_current_head()


def upgrade(conn: Connection) -> None:
    """Apply every missing migration on `conn`, inside the caller's transaction."""
    from alembic import command

    config = _config()
    config.attributes["connection"] = conn
    with _MIGRATING:
        command.upgrade(config, "head")
