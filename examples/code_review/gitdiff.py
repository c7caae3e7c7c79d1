"""`git diff` of a repository, parsed per file into hunks with line numbers.

    files = parse_diff(git_diff(Path("~/src/shop").expanduser(), "main"))
    files[0].path, files[0].added_lines        # "shop/users.py", {6, 20, 21, ...}
    print(render_hunks(files[0]))              # what a reviewer is shown

A reviewer sees each hunk with the new file's line numbers, `+` on added lines, ` ` on unchanged
context and `-` on removed lines (which have no number in the new file); `parse_rendered` reads
that text back, which is what the offline fakes do with the prompt they are given.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple

__all__ = [
    "DiffError",
    "DiffLine",
    "FileDiff",
    "Hunk",
    "ShownLine",
    "git_diff",
    "parse_diff",
    "parse_rendered",
    "render_hunks",
]

LineKind = Literal["+", "-", " "]

_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@(.*)$")
_SHOWN = re.compile(r"^([+\- ])\s*(\d*) \| (.*)$")
_NUMBER_WIDTH = 5
# git quotes a path with a quote, backslash, tab or newline in it (core.quotePath=false keeps
# other characters as they are).
_ESCAPE = re.compile(r'\\[\\"tn]')
_ESCAPES = {"\\\\": "\\", '\\"': '"', "\\t": "\t", "\\n": "\n"}


class DiffError(RuntimeError):
    """`git diff` could not be run, or failed; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class DiffLine:
    """One line of a hunk.

    Attributes:
        kind: "+" added, "-" removed, " " unchanged context.
        old: its number in the old file (None for an added line).
        new: its number in the new file (None for a removed line).
        text: the line without its marker.
    """

    kind: LineKind
    old: int | None
    new: int | None
    text: str


@dataclass(frozen=True, slots=True)
class Hunk:
    """One `@@ -a,b +c,d @@` block of a file's diff."""

    header: str
    lines: tuple[DiffLine, ...]


@dataclass(slots=True)
class FileDiff:
    """The changes to one file that exists after the change (deleted files are left out)."""

    path: str
    hunks: list[Hunk] = field(default_factory=list)

    @property
    def added_lines(self) -> set[int]:
        """Numbers (in the new file) of the added and changed lines."""
        return {
            line.new for hunk in self.hunks for line in hunk.lines if line.kind == "+" and line.new
        }

    @property
    def added(self) -> int:
        """How many lines were added (a changed line counts as removed and added)."""
        return sum(line.kind == "+" for hunk in self.hunks for line in hunk.lines)

    @property
    def removed(self) -> int:
        """How many lines were removed."""
        return sum(line.kind == "-" for hunk in self.hunks for line in hunk.lines)

    def line(self, number: int) -> str | None:
        """The text of line `number` of the new file, when the diff shows it."""
        for hunk in self.hunks:
            for line in hunk.lines:
                if line.new == number:
                    return line.text
        return None


class ShownLine(NamedTuple):
    """A line as a reviewer is shown it: marker, new-file number (None if removed), text."""

    kind: str
    number: int | None
    text: str


def git_diff(repo: Path, base: str, *, context: int = 3) -> str:
    """The unified diff between `base` and the working tree of `repo` (`git -C repo diff base`).

    Prefixes, colours, external diff tools and path quoting are fixed on the command line, so the
    user's git configuration cannot change the format.

    Args:
        repo: a directory inside a git working tree.
        base: a revision: a branch, a tag, a commit, `HEAD~1`.
        context: lines of unchanged context around each change.

    Raises:
        DiffError: git is not installed, `repo` is not a repository, or `base` is not a revision.
    """
    command = [
        "git",
        "-c",
        "core.quotePath=false",
        "-C",
        str(repo),
        "diff",
        "--no-color",
        "--no-ext-diff",
        "--src-prefix=a/",
        "--dst-prefix=b/",
        f"--unified={context}",
        base,
        "--",
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
    except FileNotFoundError:
        raise DiffError(
            "git is not installed (or not on PATH); install git to review a diff"
        ) from None
    except subprocess.TimeoutExpired:
        raise DiffError(
            f"git diff {base} in {repo} took longer than 60 s; try a closer --base"
        ) from None
    if done.returncode != 0:
        said = done.stderr.strip().splitlines()
        raise DiffError(
            f"git diff {base} failed in {repo}: {said[0] if said else 'no message'}; give the "
            "path of a git working tree and a --base revision that exists there"
        )
    return done.stdout


def parse_diff(text: str) -> list[FileDiff]:
    """The files of a unified diff, in order, with their hunks and line numbers.

    Deleted files and binary files are left out: they have no new lines to review.
    """
    files: list[FileDiff] = []
    current: FileDiff | None = None
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("diff --git "):
            current = None
        elif line.startswith("+++ "):
            current = _new_file(line[4:])
            if current is not None:
                files.append(current)
        elif current is not None and (match := _HUNK.match(line)):
            hunk, index = _hunk(match, lines, index + 1)
            current.hunks.append(hunk)
            continue
        index += 1
    return [file for file in files if file.hunks]


def _new_file(name: str) -> FileDiff | None:
    name = name.split("\t", 1)[0]
    if name == "/dev/null":
        return None
    if len(name) > 1 and name.startswith('"') and name.endswith('"'):
        name = _ESCAPE.sub(lambda found: _ESCAPES[found[0]], name[1:-1])
    return FileDiff(name[2:] if name.startswith("b/") else name)


def _hunk(match: re.Match[str], lines: list[str], index: int) -> tuple[Hunk, int]:
    """The hunk whose header matched, and the index of the line after it."""
    old, old_count = int(match[1]), int(match[2] or 1)
    new, new_count = int(match[3]), int(match[4] or 1)
    body: list[DiffLine] = []
    while index < len(lines) and (old_count > 0 or new_count > 0):
        line = lines[index]
        index += 1
        marker, text = line[:1], line[1:]
        if marker == "\\":  # "\ No newline at end of file"
            continue
        if marker == "+":
            body.append(DiffLine("+", None, new, text))
            new, new_count = new + 1, new_count - 1
        elif marker == "-":
            body.append(DiffLine("-", old, None, text))
            old, old_count = old + 1, old_count - 1
        else:  # context; git writes an empty context line as " " (or "" after some tools)
            body.append(DiffLine(" ", old, new, text))
            old, new, old_count, new_count = old + 1, new + 1, old_count - 1, new_count - 1
    return Hunk(match[0], tuple(body)), index


def render_hunks(file: FileDiff) -> str:
    """The file's hunks as a reviewer sees them: `+   12 | code`, one line per diff line."""
    out: list[str] = []
    for hunk in file.hunks:
        out.append(hunk.header)
        for line in hunk.lines:
            number = "" if line.new is None else str(line.new)
            out.append(f"{line.kind}{number:>{_NUMBER_WIDTH}} | {line.text}")
    return "\n".join(out)


def parse_rendered(text: str) -> list[ShownLine]:
    """The lines of `render_hunks` output found in `text` (hunk headers and other text skipped)."""
    shown = []
    for line in text.splitlines():
        match = _SHOWN.match(line)
        if match:
            kind, number, code = match.groups()
            shown.append(ShownLine(kind, int(number) if number else None, code))
    return shown
