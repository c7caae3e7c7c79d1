"""The store the `delegate` command reads and writes, and the checks made before it is opened.

Without `--db` the command uses the home store: `$DELEGATE_DB_URL`, else the SQLite file
`$DELEGATE_HOME/delegate.db` (`~/.delegate` by default). The library keeps runs only where its
user says; the command keeps every run, so that `runs`, `show` and `resume` find it.

`check_store(url, ...)` checks a URL before anything opens it: a SQLite file must be a SQLite
database, and the commands that only read (`runs`, `show`, `resume`) never create one.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from delegate.errors import ConfigError

if TYPE_CHECKING:
    from delegate.memory.records import RunRecord
    from delegate.memory.store import Store

__all__ = [
    "DB_HELP",
    "HOME",
    "SQLITE_HEADER",
    "check_store",
    "no_run",
    "open_store",
    "store_option",
    "store_url",
    "stored_run",
]

SQLITE_HEADER = b"SQLite format 3\x00"
"""The first 16 bytes of every SQLite database file."""

HOME = "the default store"
"""How messages name the home store (`store_option`)."""

DB_HELP = "The store's database URL. Default: $DELEGATE_DB_URL, else $DELEGATE_HOME/delegate.db."


def store_url(db: str | None) -> str:
    """The URL of the store a command uses: `--db` when given, else the home store's.

    Raises:
        StoreError: the home store's folder cannot be created.
    """
    from delegate.errors import StoreError
    from delegate.memory.store import default_url

    try:
        return db or default_url()
    except OSError as exc:
        raise StoreError(
            f"cannot create the default store's folder ({exc}); set DELEGATE_HOME to a writable "
            "folder or DELEGATE_DB_URL to a database, or pass --db URL"
        ) from None


def store_option(db: str | None) -> str:
    """Where the store's URL came from, as messages name it."""
    if db is not None:
        return "--db"
    return "DELEGATE_DB_URL" if os.environ.get("DELEGATE_DB_URL") else HOME


def open_store(db: str | None) -> Store | None:
    """The store `runs`, `show` and `resume` read, opened without creating anything; None when
    the home store does not exist yet (no run was stored).

    Raises:
        ConfigError: the URL is invalid, names a file that does not exist, or a file that is
            not a delegate store (`check_store`).
    """
    from delegate.memory.store import Store

    url = store_url(db)
    option = store_option(db)
    if check_store(url, create=False, option=option):
        return Store.open(url)
    if option == HOME:
        return None
    raise ConfigError(
        f"{option}: there is no store at {url!r} (the file does not exist); give the path or "
        "URL of an existing store (sqlite:///path/to/delegate.db, postgresql://...)"
    )


def no_run(run_id: str, url: str) -> ConfigError:
    """The error for a run id that is not in the store at `url`."""
    return ConfigError(
        f"no run {run_id!r} in the store {url}; `delegate runs` lists the recent ones "
        "(--db URL reads another store)"
    )


def stored_run(store: Store, run_id: str) -> RunRecord:
    """The run `run_id` of `store`.

    Raises:
        ConfigError: there is no such run (`no_run`).
    """
    run = store.get_run(run_id)
    if run is None:
        raise no_run(run_id, store.url)
    return run


# -- checks before opening ------------------------------------------------------------------


def _sqlite_file(url: str) -> Path | None:
    """The file of a SQLite store URL (a bare path is one); None for an in-memory database or
    another backend.

    Raises:
        ConfigError: `url` is not a database URL.
    """
    if url == ":memory:":
        return None
    if "://" not in url:
        return Path(url).expanduser()
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise ConfigError(f"database URL is not valid: {exc}") from None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(str(parsed.database)).expanduser()


def _header(path: Path) -> tuple[bytes, int] | None:
    """The first 16 bytes of the regular file at `path` and its size; None when it does not
    exist.

    Raises:
        ConfigError: it is not a regular file, or cannot be read.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read the store {str(path)!r}: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(
                f"the store {str(path)!r} is not a regular file; give --db the path of a "
                "SQLite file (sqlite:///path/to/delegate.db)"
            )
        return os.read(fd, len(SQLITE_HEADER)), info.st_size
    except OSError as exc:
        raise ConfigError(f"cannot read the store {str(path)!r}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def _has_runs_table(path: Path) -> bool | None:
    """Whether the SQLite file has delegate's `runs` table (None: it could not be told)."""
    import sqlite3
    import urllib.parse

    uri = f"file:{urllib.parse.quote(str(path.absolute()))}?mode=ro"
    try:
        connection = sqlite3.connect(uri, uri=True, timeout=1.0)
    except sqlite3.Error:
        return None
    try:
        row = connection.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'runs'"
        ).fetchone()
    except sqlite3.Error:
        return None
    finally:
        connection.close()
    return row is not None


def check_store(url: str, *, create: bool, option: str = "--db") -> bool:
    """Check a store's URL before it is opened.

    A SQLite file that exists must be a regular file holding a SQLite database (a non-empty
    file without SQLite's header, `/etc/passwd`, is refused). With `create=False` (`runs`,
    `show`, `resume`) the file must exist and be a delegate store: nothing is created.

    Args:
        url: the store's URL or path.
        create: the command may create the store (`run`).
        option: how messages name where the URL came from.

    Returns:
        False when `create` is False and there is no store at `url` yet; else True.

    Raises:
        ConfigError: the URL is invalid, the file is not a SQLite database (or not a delegate
            store), or its folder does not exist.
    """
    path = _sqlite_file(url)
    if path is None:
        return True
    found = _header(path)
    if found is None:
        if not create:
            return False
        if not path.absolute().parent.is_dir():
            raise ConfigError(
                f"cannot create the store {str(path)!r}: the folder {str(path.parent)!r} does "
                f"not exist; create it, or give {option} another path"
            )
        return True
    header, size = found
    if size == 0 and create:
        return True  # SQLite makes a database of an empty file
    if header != SQLITE_HEADER:
        what = "an empty file" if size == 0 else "not a SQLite database"
        remedy = ", or a new path to create one" if create else ""
        raise ConfigError(
            f"{option}: {str(path)!r} is {what}, so not a delegate store; give the path of a "
            f"store{remedy}"
        )
    if not create and _has_runs_table(path) is False:
        raise ConfigError(
            f"{option}: {str(path)!r} is a SQLite database but not a delegate store (it has no "
            "runs); give the path of a store"
        )
    return True
