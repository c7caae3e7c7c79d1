"""What keeps the `delegate` command's runs alive and its arguments bounded.

- `PipeSafeStream`: stdout and stderr go quiet, instead of raising, once their reader is gone
  (`delegate run … | head -3`): the run goes on to its end and its result is in the store.
  `stdout()` and `stderr()` are the streams commands write to: pipe-safe, credentials masked.
- `stop_signals()`: SIGTERM and SIGHUP stop a command the way Ctrl-C does, so a run they stop
  is stored as "interrupted" (not left "running"); `stopped_by()` says which signal it was.
- `bounded(...)`: option callbacks for numbers that must be finite and within a range.

Store URLs are checked in `delegate.cli._stores`.
"""

from __future__ import annotations

import errno
import math
import os
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import IO, Any, TextIO, cast

import click

from delegate.errors import ConfigError

__all__ = [
    "PipeSafeStream",
    "bounded",
    "pipe_safe",
    "signal_label",
    "stderr",
    "stdout",
    "stop_signals",
    "stopped_by",
]

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


def stdout() -> TextIO:
    """stdout, every credential delegate knows masked in what is written (the last line of
    redaction: errors, logs and stored rows are masked before they get here), quiet once its
    reader is gone (`PipeSafeStream`)."""
    from delegate._secrets import RedactingStream

    return cast(TextIO, RedactingStream(pipe_safe(sys.stdout)))


def stderr() -> TextIO:
    """stderr, credentials masked and a closed pipe tolerated like `stdout()`'s."""
    from delegate._secrets import RedactingStream

    return cast(TextIO, RedactingStream(pipe_safe(sys.stderr)))


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


def signal_label(name: str) -> str:
    """How messages name a stop signal: "Ctrl-C" for SIGINT, else its name ("SIGTERM")."""
    return "Ctrl-C" if name == "SIGINT" else name


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
