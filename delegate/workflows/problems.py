"""`Problem`: one thing wrong with a workflow file, at a line and column editors can jump to."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Problem"]


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem in a workflow file; `str()` is `file:line:col: message`.

    Attributes:
        file: the file as it was named when loaded.
        line: 1-based line, as editors show it.
        col: 1-based column.
        message: what is wrong and how to fix it.
    """

    file: str
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.message}"
