"""Reading a file named on the command line, bounded: regular files only, at most `limit` bytes.

A FIFO would block the read until a writer comes (forever, for one nobody writes to), and a
device such as /dev/zero never ends; `stat` says 0 bytes for both. The file is opened without
blocking and checked on the open descriptor, so a path swapped after the check is still caught,
and never more than `limit + 1` bytes are read.
"""

from __future__ import annotations

import os
import stat

__all__ = ["FileProblem", "read_bounded"]


class FileProblem(Exception):
    """A file that cannot be read as asked: the message says why (callers add the file's role).

    Attributes:
        size: the file's size when it is over the limit (else None).
    """

    def __init__(self, message: str, *, size: int | None = None) -> None:
        super().__init__(message)
        self.size = size


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def read_bounded(path: str | os.PathLike[str], limit: int) -> bytes:
    """The bytes of the regular file at `path`.

    Raises:
        FileProblem: the file does not exist or cannot be opened, is not a regular file (a FIFO,
            a device, a directory, a socket), or holds more than `limit` bytes.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise FileProblem(str(exc.strerror or exc)) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = _kind(info.st_mode)
            raise FileProblem(f"it is {kind}, not a regular file; give the path of a file")
        if info.st_size > limit:
            raise FileProblem(
                f"it has {info.st_size:,} bytes, more than the limit of {limit:,}",
                size=info.st_size,
            )
        # O_NONBLOCK changes nothing for a regular file; read in chunks up to the limit + 1.
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise FileProblem(str(exc.strerror or exc)) from None
    finally:
        os.close(fd)
    if size > limit:  # it grew after fstat
        raise FileProblem(f"it has more than {limit:,} bytes, the limit", size=size)
    return b"".join(chunks)
