"""Where an orchestrator keeps its runs: which store `Orchestrator(memory=)` names, opened on
first use, and closed by the orchestrator when it opened it.

    memory left out  -> $DELEGATE_DB_URL when set, else no store
    memory="home"    -> $DELEGATE_DB_URL, else the SQLite file $DELEGATE_HOME/delegate.db
    memory=<URL>     -> that database
    memory=":memory:" -> a database inside this process, for this orchestrator only
    memory=<Store>   -> that store, which stays the caller's to close
    memory=None      -> no store, whatever the environment says

Nothing is shared between orchestrators: two on the same URL each open their own `Store` (SQLite
in WAL mode and the store's own locking let them write the same file). Without a store nothing
here imports SQLAlchemy or hops to a thread.
"""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread

from delegate.errors import ConfigError, StoreError

if TYPE_CHECKING:
    from delegate.memory.store import Store

__all__ = ["FROM_ENV", "HOME", "StoreSlot"]

FROM_ENV = "env"
"""`Orchestrator(memory=)` left out: the database `$DELEGATE_DB_URL` names, else none."""
HOME = "home"
"""The home store: `$DELEGATE_DB_URL`, else `$DELEGATE_HOME/delegate.db` (what the CLI uses)."""


class StoreSlot:
    """The store of one orchestrator: resolved when it is made, opened on first use.

    `use()` hands the store to one run; `close()` marks the slot closed (no new runs) and closes
    a store it opened itself once the runs that hold it have ended, so a run in progress never
    loses its store. A `Store` the caller gave is never closed here.

    Attributes:
        source: the database URL, "home", a caller's `Store`, or None for no store.
        closed: `close()` was called; `use()` refuses.
    """

    def __init__(self, memory: object) -> None:
        self.source: str | Store | None = _source(memory)
        self.closed = False
        self._store: Store | None = None
        self._users = 0
        self._count = threading.Lock()  # `close()` may come from another thread (sync API)
        self._opening = threading.Lock()  # held in a worker thread while a store opens

    @property
    def keeps(self) -> bool:
        """Whether runs are kept in a store (and agents can have memory, calls a cache)."""
        return self.source is not None

    @asynccontextmanager
    async def use(self) -> AsyncIterator[Store | None]:
        """The store for one run (opened now if it is the first), or None when there is none.

        Raises:
            ConfigError: the orchestrator was closed.
            StoreError: the store cannot be opened.
        """
        with self._count:
            if self.closed:
                raise ConfigError(
                    "this Orchestrator was closed (aclose(), close() or the end of its `async "
                    "with` block); create a new Orchestrator to run again"
                )
            self._users += 1
        try:
            if self.source is None:
                yield None
            else:
                # Opened once; later runs take it without a thread hop.
                yield self._store or await anyio.to_thread.run_sync(self._open)
        finally:
            with self._count:
                self._users -= 1
                last = self.closed and self._users == 0
            if last:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(self._release)

    def close(self) -> None:
        """Refuse new runs; close the store this slot opened, now or when its last run ends."""
        with self._count:
            self.closed = True
            idle = self._users == 0
        if idle:
            self._release()

    async def aclose(self) -> None:
        """`close()`, in a worker thread when there is a store to close (PostgreSQL's take a
        round trip); it completes even when the caller is cancelled."""
        if self._store is None:
            self.close()
            return
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self.close)

    def _open(self) -> Store:
        with self._opening:
            if self._store is None:
                from delegate.memory.store import Store

                source = self.source
                if isinstance(source, Store):
                    self._store = source
                else:
                    self._store = Store.open(_home_url() if source == HOME else source)
            return self._store

    def _release(self) -> None:
        with self._opening:
            store, self._store = self._store, None
        if store is not None and store is not self.source:
            store.close()


def _source(memory: object) -> str | Store | None:
    """The store `Orchestrator(memory=)` names: a URL, "home", a `Store`, or None for none.

    Raises:
        ConfigError: not a URL, "home", ":memory:", a `Store` or None; or the removed "default".
    """
    if memory == "default":
        raise ConfigError(
            'memory="default" is no longer accepted: pass memory="home" for the home store '
            "($DELEGATE_DB_URL, else $DELEGATE_HOME/delegate.db, as the CLI uses), or leave "
            "memory out to keep runs only where $DELEGATE_DB_URL says"
        )
    if memory == FROM_ENV:
        return os.environ.get("DELEGATE_DB_URL") or None
    if memory is None or (isinstance(memory, str) and memory.strip()):
        return memory
    if not isinstance(memory, str):
        from delegate.memory.store import Store

        if isinstance(memory, Store):
            return memory
    shown = repr(memory) if isinstance(memory, str) else type(memory).__name__
    raise ConfigError(
        f'memory must be a database URL, "home", ":memory:", a Store or None; got {shown}'
    )


def _home_url() -> str:
    from delegate.memory.store import default_url

    try:
        return default_url()
    except OSError as exc:
        raise StoreError(
            f"cannot create the home store's folder ({exc}); set DELEGATE_HOME to a writable "
            "folder or DELEGATE_DB_URL to a database, or pass Orchestrator(memory=None) to keep "
            "runs in memory only"
        ) from None
