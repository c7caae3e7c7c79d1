"""What keeps the `delegate` command's runs alive and its arguments bounded.

- `PipeSafeStream`: stdout and stderr go quiet, instead of raising, once their reader is gone
  (`delegate run … | head -3`): the run goes on to its end and its result is in the store.
- `stop_signals()`: SIGTERM and SIGHUP stop a command the way Ctrl-C does, so a run they stop
  is stored as "interrupted" (not left "running"); `stopped_by()` says which signal it was.
- `check_store(url, ...)`: a store URL is checked before anything opens it: a SQLite file must
  be a SQLite database, and the commands that only read (`runs`, `show`, `resume`) never create
  one.
- `bounded(...)`: option callbacks for numbers that must be finite and within a range.
"""

from __future__ import annotations

import errno
import math
import os
import signal
import stat
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import IO, Any, cast

import click

from delegate.errors import ConfigError

__all__ = [
    "SQLITE_HEADER",
    "PipeSafeStream",
    "bounded",
    "check_store",
    "pipe_safe",
    "stop_signals",
    "stopped_by",
]

SQLITE_HEADER = b"SQLite format 3\x00"
"""The first 16 bytes of every SQLite database file."""

# A reader that went away: a closed pipe, or a terminal that hung up.
_GONE = frozenset({errno.EPIPE, errno.ESHUTDOWN, errno.EIO})


# -- output streams ---------------------------------------------------------------------------


class PipeSafeStream:
    """A text stream that stops writing, silently, once the one it wraps lost its reader.

    A closed pipe must not end a run that is still spending: the run goes on, and its result
    is in the store. On the first EPIPE the wrapped stream's descriptor is pointed at
    /dev/null (Python's documented recipe), so that what is still buffered, the interpreter's
    flush at exit and any other writer of that descriptor (logs) have nowhere to fail either.
    Everything else (`isatty`, `fileno`, `encoding`, ...) is the wrapped stream's.
    """

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self.gone = False
        """Whether the reader went away (nothing is written any more)."""

    def write(self, text: str) -> int:
        """Write `text`, unless the reader is gone; `len(text)` either way."""
        if not self.gone:
            try:
                self._stream.write(text)
            except OSError as exc:
                self._lost(exc)
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        """Write each of `lines`."""
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        """Flush the wrapped stream, unless the reader is gone."""
        if not self.gone:
            try:
                self._stream.flush()
            except OSError as exc:
                self._lost(exc)

    def _lost(self, exc: OSError) -> None:
        if exc.errno not in _GONE:
            raise exc
        self.gone = True
        try:
            fd = self._stream.fileno()
        except (AttributeError, OSError, ValueError):
            return  # not a file (a test's buffer): nothing is flushed at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, fd)
        finally:
            os.close(devnull)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def pipe_safe(stream: IO[str]) -> IO[str]:
    """`stream`, wrapped in a `PipeSafeStream` unless it already is one."""
    if isinstance(stream, PipeSafeStream):
        return stream
    return cast(IO[str], PipeSafeStream(stream))


# -- stop signals -----------------------------------------------------------------------------

_STOPPING = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))
_stopped_by: list[int] = []


def _on_stop_signal(signum: int, frame: FrameType | None) -> None:
    _stopped_by.append(signum)
    if callable(signal.getsignal(signal.SIGINT)):
        # Python's own handler raises KeyboardInterrupt; asyncio's (while a run is on its event
        # loop) cancels the run's task, which stores the run as "interrupted" and then raises
        # KeyboardInterrupt: the very path of Ctrl-C.
        signal.raise_signal(signal.SIGINT)
    else:  # Ctrl-C is ignored (a background job): stop all the same
        raise KeyboardInterrupt


@contextmanager
def stop_signals() -> Iterator[None]:
    """Within: SIGTERM and SIGHUP stop the command as Ctrl-C does (previous handlers restored
    after). Only in the main thread; elsewhere, nothing changes."""
    _stopped_by.clear()
    previous: dict[int, Any] = {}
    try:
        for signum in _STOPPING:
            previous[signum] = signal.signal(signum, _on_stop_signal)
    except ValueError:  # not the main thread
        pass
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def stopped_by() -> tuple[str, int]:
    """The signal that stopped the command ("SIGTERM", "SIGINT" for Ctrl-C, ...) and the exit
    status that says so (128 + its number: 130 for Ctrl-C, 143 for SIGTERM)."""
    signum = _stopped_by[0] if _stopped_by else signal.SIGINT
    return signal.Signals(signum).name, 128 + int(signum)


# -- stores -----------------------------------------------------------------------------------


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


# -- numeric options --------------------------------------------------------------------------


def bounded(
    low: float,
    high: float,
    *,
    low_open: bool = False,
    integer: bool = False,
    remedy: str = "",
) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """A click callback that refuses a value that is not finite or not within [low, high]
    (`low_open`: above low) with a one-line `ConfigError`."""

    def check(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is None:
            return value
        below = value <= low if low_open else value < low
        if (isinstance(value, float) and not math.isfinite(value)) or below or value > high:
            name = param.opts[0] if param.opts else str(param.name)
            floor = f"more than {low:g}" if low_open else f"at least {low:g}"
            if integer:
                range_, shown = f"{floor} and at most {high:,.0f}", f"{value:,}"
            else:
                ceiling = f" and at most {high:g}" if math.isfinite(high) else ""
                range_, shown = f"a finite number {floor}{ceiling}", f"{value:g}"
            raise ConfigError(
                f"{name} must be {range_}, got {shown}" + (f"; {remedy}" if remedy else "")
            )
        return value

    return check
