"""The store's backend matrix: one parametrized fixture, SQLite always, PostgreSQL when reachable.

`store_url` yields a SQLite file URL under tmp_path and, when `DELEGATE_TEST_PG_URL` names a
reachable server (`.ci/run` starts one), a URL to a fresh database created for the test and
dropped after it. Without a server the PostgreSQL case is skipped with the reason.

Test modules use it with `from _backends import store_url  # noqa: F401`, plus the helpers
below for concurrent writers in other processes.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

PG_ENV = "DELEGATE_TEST_PG_URL"


@functools.cache
def pg_unreachable_reason() -> str | None:
    """None when the PostgreSQL in $DELEGATE_TEST_PG_URL answers, else why it is skipped."""
    url = os.environ.get(PG_ENV)
    if not url:
        return f"PostgreSQL tests skipped: ${PG_ENV} is not set (.ci/run sets it)"
    try:
        import psycopg
    except ImportError:
        return 'PostgreSQL tests skipped: psycopg is missing (pip install "delegate[postgres]")'
    try:
        with psycopg.connect(_libpq(url), connect_timeout=3):
            pass
    except psycopg.Error as exc:
        return f"PostgreSQL tests skipped: {PG_ENV} is not reachable: {exc}"
    return None


def _libpq(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL to an empty database: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'delegate.db'}"
        return
    reason = pg_unreachable_reason()
    if reason is not None:
        print(reason)
        pytest.skip(reason)
    import psycopg

    admin = os.environ[PG_ENV]
    name = f"delegate_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_libpq(admin), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield (
            make_url(admin)
            .set(drivername="postgresql+psycopg", database=name)
            .render_as_string(hide_password=False)
        )
    finally:
        with psycopg.connect(_libpq(admin), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def write_memories(url: str, worker: int, count: int) -> dict[str, int]:
    """Write `count` memories to a shared key and `count` to this worker's own keys.

    Runs in a spawned process. Returns how many writes succeeded and how many failed with
    "database is locked" (any other error propagates and fails the caller).
    """
    from delegate.memory.store import Store, StoreError

    written = locked = 0
    store = Store.open(url)
    try:
        for i in range(count):
            for key in ("shared", f"own-{worker}-{i % 10}"):
                try:
                    store.put_memory("bench", key, {"worker": worker, "i": i}, text=f"w{worker}")
                except StoreError as exc:
                    if "database is locked" not in str(exc):
                        raise
                    locked += 1
                else:
                    written += 1
    finally:
        store.close()
    return {"written": written, "locked": locked}
